// Reads the libconfig-format configuration file into a validated Config (config.h).
// Every problem is reported, not just the first, each as "FILE:LINE: SETTING = VALUE: what is
// wrong and the fix", one per line. Unknown settings are errors, so a misspelt name cannot
// silently leave a default in force. The only place in dkimrotor that includes <libconfig.h++>;
// libconfig++'s exceptions stop here.
// Stateless; safe from any thread (each call parses with its own libconfig::Config).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "conf/config.h"
#include "util/result.h"

namespace dkimrotor::conf {

// kIo (naming the path) when the file cannot be read; kInvalidArgument for syntax and
// validation errors. `@include "other.conf"` is resolved relative to the file's directory.
util::Result<Config> LoadConfig(const std::string& path);

// The same, from text in memory; `source_name` stands in for the file name in errors.
util::Result<Config> ParseConfig(std::string_view text, std::string_view source_name);

// Every setting the loader knows, as "section.name" ("milter.socket") and, for the settings of
// one domain entry, "domains.[].name" ("domains.[].bits").
std::vector<std::string> KnownSettings();

}  // namespace dkimrotor::conf
