#include "cli/args.h"

namespace dkimrotor::cli {

Args::Args(std::span<char*> argv, std::set<std::string> with_value, std::set<std::string> flags) {
  for (size_t i = 0; i < argv.size(); ++i) {
    std::string arg = argv[i];
    if (arg.size() < 2 || arg[0] != '-') {
      positional_.push_back(arg);
      continue;
    }
    std::string name = arg;
    std::optional<std::string> value;
    if (auto eq = arg.find('='); arg.starts_with("--") && eq != std::string::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    }
    if (name == "-c") name = "--config";
    if (flags.count(name)) {
      if (value) {
        error_ = name + " takes no value";
        return;
      }
      flags_set_.insert(name);
    } else if (with_value.count(name)) {
      if (!value) {
        if (i + 1 >= argv.size()) {
          error_ = name + " needs a value";
          return;
        }
        value = argv[++i];
      }
      values_[name] = *value;
    } else {
      error_ = "unknown option " + name;
      return;
    }
  }
}

std::optional<std::string> Args::Get(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

}  // namespace dkimrotor::cli
