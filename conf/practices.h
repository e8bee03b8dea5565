// Checks a valid Config against published DKIM practice (M3AAWG DKIM Key Rotation BCP 2019,
// RFC 8301, RFC 8463) and says where it departs: advice to log at startup, never a refusal.
// Stateless; safe from any thread.
#pragma once

#include <string>
#include <vector>

#include "conf/config.h"

namespace dkimrotor::conf {

// One warning per finding, each naming the domain (when there is one), the setting, its value
// and what to do, e.g.
//   domain example.com: key_lifetime = "200d" is over six months (183d): ...
// Empty when nothing departs from practice.
// Includes MilterSocketWarnings().
std::vector<std::string> CheckPractices(const Config& config);

// Anyone who can connect to the milter socket can have mail signed for every domain: warns
// when milter.socket listens beyond loopback (no host, 0.0.0.0, ::, or any other address or
// name) or when a unix socket's socket_mode lets everyone connect. The daemon logs these once
// at start; `check` reports them.
std::vector<std::string> MilterSocketWarnings(const MilterConfig& milter);

}  // namespace dkimrotor::conf
