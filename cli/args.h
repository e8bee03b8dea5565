// A small option parser for the subcommands: "--name value", "--name=value", "-c FILE" and
// flags. Unknown options are usage errors. Not thread-safe; used once per process.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

namespace dkimrotor::cli {

class Args {
 public:
  // `with_value` lists options that take a value, `flags` those that do not; positional
  // arguments are kept in order.
  Args(std::span<char*> argv, std::set<std::string> with_value, std::set<std::string> flags);

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  std::optional<std::string> Get(const std::string& name) const;
  bool Has(const std::string& name) const { return flags_set_.count(name) != 0 || values_.count(name) != 0; }
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::map<std::string, std::string> values_;
  std::set<std::string> flags_set_;
  std::vector<std::string> positional_;
  std::string error_;
};

}  // namespace dkimrotor::cli
