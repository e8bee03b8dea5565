// Parsing never throws: nlohmann's parse with exceptions off, type checks before every get,
// and dumps that replace invalid UTF-8 instead of throwing on it.
#include "control/protocol.h"

#include <array>
#include <utility>

namespace dkimrotor::control {
namespace {

constexpr size_t kMaxNesting = 4;      // a request is one flat object
constexpr size_t kMaxNameLength = 253;  // a DNS name

constexpr std::array<std::pair<Command, std::string_view>, 5> kCommands = {{
    {Command::kStatus, "status"},
    {Command::kKeys, "keys"},
    {Command::kRotate, "rotate"},
    {Command::kEmergency, "emergency"},
    {Command::kImport, "import"},
}};

std::string Dump(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

// Deeper nesting than a request has is refused before the parser recurses into it.
bool TooDeep(std::string_view text) {
  size_t depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '{' || c == '[') {
      if (++depth > kMaxNesting) return true;
    } else if ((c == '}' || c == ']') && depth > 0) {
      --depth;
    }
  }
  return false;
}

util::Result<std::string> Name(const nlohmann::json& j, const char* field, bool required) {
  auto it = j.find(field);
  if (it == j.end()) {
    if (required) return util::Err(util::ErrorCode::kInvalidArgument, std::string("the request needs \"") + field + "\"");
    return std::string();
  }
  if (!it->is_string())
    return util::Err(util::ErrorCode::kInvalidArgument, std::string("\"") + field + "\" must be a string");
  std::string value = it->get<std::string>();
  if (value.empty() || value.size() > kMaxNameLength)
    return util::Err(util::ErrorCode::kInvalidArgument,
                     std::string("\"") + field + "\" must be 1 to 253 characters long");
  return value;
}

}  // namespace

std::string SocketPath(const std::string& keystore_directory) { return keystore_directory + "/" + kSocketName; }

std::string_view CommandName(Command command) {
  for (const auto& [c, name] : kCommands)
    if (c == command) return name;
  return "?";
}

std::string SerializeRequest(const Request& r) {
  nlohmann::json j;
  j["command"] = std::string(CommandName(r.command));
  if (!r.domain.empty()) j["domain"] = r.domain;
  if (!r.selector.empty()) j["selector"] = r.selector;
  if (r.force) j["force"] = true;
  if (!r.pem.empty()) j["pem"] = r.pem;
  return Dump(j);
}

util::Result<Request> ParseRequest(std::string_view text) {
  if (text.size() > kMaxRequestBytes)
    return util::Err(util::ErrorCode::kInvalidArgument,
                     "request of more than " + std::to_string(kMaxRequestBytes) + " bytes refused");
  if (TooDeep(text)) return util::Err(util::ErrorCode::kInvalidArgument, "request nested too deeply: it is one flat JSON object");
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded())
    return util::Err(util::ErrorCode::kInvalidArgument,
                     "the request is not valid JSON (or was cut short): send one UTF-8 JSON object");
  if (!j.is_object()) return util::Err(util::ErrorCode::kInvalidArgument, "the request must be a JSON object");
  for (const auto& [key, value] : j.items())
    if (key != "command" && key != "domain" && key != "selector" && key != "force" && key != "pem")
      return util::Err(util::ErrorCode::kInvalidArgument, "unknown field \"" + key + "\" in the request");
  auto command = j.find("command");
  if (command == j.end() || !command->is_string())
    return util::Err(util::ErrorCode::kInvalidArgument, "the request needs \"command\" (a string)");
  Request r;
  bool known = false;
  for (const auto& [c, name] : kCommands)
    if (command->get<std::string>() == name) {
      r.command = c;
      known = true;
    }
  if (!known)
    return util::Err(util::ErrorCode::kInvalidArgument,
                     "unknown command \"" + command->get<std::string>() +
                         "\" (status, keys, rotate, emergency, import)");
  const bool domain = r.command == Command::kRotate || r.command == Command::kEmergency || r.command == Command::kImport;
  const bool selector = r.command == Command::kEmergency || r.command == Command::kImport;
  ASSIGN_OR_RETURN(r.domain, Name(j, "domain", domain));
  ASSIGN_OR_RETURN(r.selector, Name(j, "selector", selector));
  if (!domain && j.contains("domain")) return util::Err(util::ErrorCode::kInvalidArgument, "\"domain\" does not go with this command");
  if (!selector && j.contains("selector"))
    return util::Err(util::ErrorCode::kInvalidArgument, "\"selector\" does not go with this command");
  if (auto it = j.find("force"); it != j.end()) {
    if (r.command != Command::kEmergency)
      return util::Err(util::ErrorCode::kInvalidArgument, "\"force\" only goes with emergency");
    if (!it->is_boolean()) return util::Err(util::ErrorCode::kInvalidArgument, "\"force\" must be true or false");
    r.force = it->get<bool>();
  }
  if (auto it = j.find("pem"); it != j.end()) {
    if (r.command != Command::kImport) return util::Err(util::ErrorCode::kInvalidArgument, "\"pem\" only goes with import");
    if (!it->is_string()) return util::Err(util::ErrorCode::kInvalidArgument, "\"pem\" must be a string");
    r.pem = it->get<std::string>();
  }
  if (r.command == Command::kImport && r.pem.empty())
    return util::Err(util::ErrorCode::kInvalidArgument, "import needs \"pem\", the private key");
  return r;
}

Answer Success(nlohmann::json result) { return {true, "", std::move(result)}; }
Answer Failure(std::string error) { return {false, std::move(error), nullptr}; }

std::string SerializeAnswer(const Answer& a) {
  nlohmann::json j;
  j["ok"] = a.ok;
  if (a.ok) {
    j["result"] = a.result.is_null() ? nlohmann::json::object() : a.result;
  } else {
    j["error"] = a.error;
  }
  return Dump(j);
}

util::Result<Answer> ParseAnswer(std::string_view text) {
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object() || !j.contains("ok") || !j["ok"].is_boolean())
    return util::Err(util::ErrorCode::kIo, "the daemon's answer is not what the control protocol says");
  Answer a;
  a.ok = j["ok"].get<bool>();
  if (a.ok) {
    a.result = j.contains("result") ? j["result"] : nlohmann::json::object();
  } else {
    a.error = j.contains("error") && j["error"].is_string() ? j["error"].get<std::string>() : "unspecified error";
  }
  return a;
}

}  // namespace dkimrotor::control
