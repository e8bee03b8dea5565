// A value or an Error, returned instead of throwing: the house error type.
// Shaped like std::expected (has_value, value, error) so it can become an alias later.
// Thread-compatible: a Result is a plain value; share it only under external synchronization.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace dkimrotor::util {

enum class ErrorCode {
  kInvalidArgument,  // the caller's input is wrong: a message, an option, a key file
  kNotFound,
  kIo,
  kCrypto,
  kDns,
  kInternal,
};

const char* ErrorCodeName(ErrorCode code) noexcept;

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
};

// What Err() returns: converts to any Result<T>, as std::unexpected does.
struct Unexpected {
  Error error;
};

inline Unexpected Err(ErrorCode code, std::string message) {
  return Unexpected{Error{code, std::move(message)}};
}

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  Result(Unexpected u) : v_(std::in_place_index<1>, std::move(u.error)) {}  // NOLINT
  Result(Error e) : v_(std::in_place_index<1>, std::move(e)) {}  // NOLINT

  bool has_value() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  T& value() & { assert(has_value()); return std::get<0>(v_); }
  const T& value() const& { assert(has_value()); return std::get<0>(v_); }
  T&& value() && { assert(has_value()); return std::get<0>(std::move(v_)); }
  const Error& error() const& { assert(!has_value()); return std::get<1>(v_); }
  Error&& error() && { assert(!has_value()); return std::get<1>(std::move(v_)); }

  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Unexpected u) : error_(std::move(u.error)), ok_(false) {}  // NOLINT
  Result(Error e) : error_(std::move(e)), ok_(false) {}  // NOLINT

  bool has_value() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }
  void value() const { assert(ok_); }
  const Error& error() const& { assert(!ok_); return error_; }
  Error&& error() && { assert(!ok_); return std::move(error_); }

 private:
  Error error_;
  bool ok_ = true;
};

using Status = Result<void>;

inline Status Ok() { return {}; }

}  // namespace dkimrotor::util

#define DKIMROTOR_CONCAT_INNER(a, b) a##b
#define DKIMROTOR_CONCAT(a, b) DKIMROTOR_CONCAT_INNER(a, b)

// Returns the error of a failed Result from the enclosing function.
#define RETURN_IF_ERROR(expr)                                  \
  do {                                                         \
    auto&& dkimrotor_status_ = (expr);                         \
    if (!dkimrotor_status_.has_value())                        \
      return ::dkimrotor::util::Unexpected{                    \
          std::move(dkimrotor_status_).error()};               \
  } while (0)

#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr)                          \
  auto tmp = (expr);                                                   \
  if (!tmp.has_value())                                                \
    return ::dkimrotor::util::Unexpected{std::move(tmp).error()};      \
  lhs = std::move(tmp).value()

// `ASSIGN_OR_RETURN(auto key, LoadKey(pem));`
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL(DKIMROTOR_CONCAT(dkimrotor_result_, __LINE__), lhs, expr)
