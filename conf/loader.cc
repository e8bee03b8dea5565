#include "conf/loader.h"

#include <libconfig.h++>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <sstream>
#include <tuple>
#include <utility>

#include "conf/duration.h"
#include "conf/internal/syntax.h"
#include "util/file.h"

namespace dkimrotor::conf {
namespace {

using libconfig::Setting;
using Names = std::vector<std::string_view>;

const Names kSections = {"milter", "signing", "keystore", "dns", "log", "metrics", "domains"};
const Names kMilterSettings = {"socket", "on_error", "on_bad_message", "user", "group",
                               "socket_mode", "stop_timeout"};
const Names kSigningSettings = {"internal_hosts",    "sign_authenticated", "canonicalization",
                                "headers",           "oversign",           "signature_lifetime",
                                "max_header_fields", "max_header_bytes"};
const Names kKeystoreSettings = {"directory"};
const Names kDnsSettings = {"resolvers", "check_authoritative", "authoritative_port",
                            "min_propagation", "poll", "timeout"};
const Names kLogSettings = {"target", "level", "audit"};
const Names kMetricsSettings = {"listen"};
const Names kDomainSettings = {"domain",       "stream",          "algorithms", "bits",
                               "active_keys",  "key_lifetime",    "prepublish", "grace",
                               "selector_format", "publish_hook", "hook_timeout", "subdomains",
                               "delegation"};
const Names kDelegationSettings = {"zone", "slots"};

// Where each known name lives, to point a setting written in the wrong section to the right one.
const std::vector<std::pair<std::string_view, const Names*>> kSchema = {
    {"milter", &kMilterSettings}, {"signing", &kSigningSettings},
    {"keystore", &kKeystoreSettings}, {"dns", &kDnsSettings},
    {"log", &kLogSettings}, {"metrics", &kMetricsSettings}, {"domains", &kDomainSettings}};

constexpr size_t kMaxErrors = 20;
constexpr uint16_t kDefaultMetricsPort = 9795;

// The file's spellings, for messages; signer::ParseAlgorithm/ParseCanonicalization read them.
const std::vector<std::string_view> kAlgorithmNames = [] {
  std::vector<std::string_view> names;
  for (signer::Algorithm a : signer::kAlgorithms) names.push_back(signer::AlgorithmName(a));
  return names;
}();
const std::vector<std::string_view> kCanonicalizations = {"relaxed/relaxed", "relaxed/simple",
                                                          "simple/relaxed", "simple/simple"};

template <class E>
using EnumTable = std::vector<std::pair<std::string_view, E>>;

const EnumTable<OnError> kOnErrorValues = {{"tempfail", OnError::kTempfail},
                                           {"accept", OnError::kAccept}};
const EnumTable<OnBadMessage> kOnBadMessageValues = {{"accept", OnBadMessage::kAccept},
                                                     {"reject", OnBadMessage::kReject},
                                                     {"tempfail", OnBadMessage::kTempfail}};
const EnumTable<LogTarget> kLogTargetValues = {{"stderr", LogTarget::kStderr},
                                               {"syslog", LogTarget::kSyslog}};
const EnumTable<LogLevel> kLogLevelValues = {
    {"trace", LogLevel::kTrace}, {"debug", LogLevel::kDebug}, {"info", LogLevel::kInfo},
    {"warn", LogLevel::kWarn},   {"error", LogLevel::kError}, {"critical", LogLevel::kCritical},
    {"off", LogLevel::kOff}};

// What a setting must hold; the names double as the text of type errors.
enum class Kind { kString, kDuration, kModeString, kBool, kInt, kGroup, kStringList, kGroupList };

std::string ExpectedText(Kind kind) {
  switch (kind) {
    case Kind::kString: return "expected a string in double quotes";
    case Kind::kDuration:
      return "expected a duration in double quotes, such as \"30s\", \"10m\", \"1h\", \"14d\" "
             "or \"2w\"";
    case Kind::kModeString:
      return "expected a string: write it in double quotes, as \"0660\" (a bare 0660 is read as "
             "the decimal number 660)";
    case Kind::kBool: return "expected true or false, without quotes";
    case Kind::kInt: return "expected a whole number, without quotes";
    case Kind::kGroup: return "expected a group in braces: { name = value; ... }";
    case Kind::kStringList: return "expected a list of strings in brackets: [\"a\", \"b\"]";
    case Kind::kGroupList:
      return "expected a list of groups in parentheses: ( { domain = \"example.com\"; ... } )";
  }
  return "unexpected type";
}

bool HasKind(const Setting& s, Kind kind) {
  switch (kind) {
    case Kind::kString:
    case Kind::kDuration:
    case Kind::kModeString: return s.getType() == Setting::TypeString;
    case Kind::kBool: return s.getType() == Setting::TypeBoolean;
    case Kind::kInt: return s.getType() == Setting::TypeInt || s.getType() == Setting::TypeInt64;
    case Kind::kGroup: return s.isGroup();
    case Kind::kStringList:
      // An empty list or array has no element type; "[]" and "()" both mean "none".
      return s.isArray() || s.isList();
    case Kind::kGroupList: return s.isList() || (s.isArray() && s.getLength() == 0);
  }
  return false;
}

std::string Quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string Render(const Setting& s) {
  switch (s.getType()) {
    case Setting::TypeInt: return std::to_string(static_cast<int>(s));
    case Setting::TypeInt64: return std::to_string(static_cast<long long>(s)) + "L";
    case Setting::TypeFloat: {
      std::ostringstream out;
      out << static_cast<double>(s);
      return out.str();
    }
    case Setting::TypeString: return Quote(s.c_str());
    case Setting::TypeBoolean: return static_cast<bool>(s) ? "true" : "false";
    case Setting::TypeGroup: return "{ ... }";
    case Setting::TypeArray: return s.getLength() == 0 ? "[]" : "[ ... ]";
    case Setting::TypeList: return s.getLength() == 0 ? "()" : "( ... )";
    default: return "?";
  }
}

std::string OneOf(const std::vector<std::string_view>& values) {
  std::string out;
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += i + 1 == values.size() ? " or " : ", ";
    out += Quote(values[i]);
  }
  return out;
}

// Walks the libconfig tree once, filling a Config and collecting every error.
class Loader {
 public:
  explicit Loader(std::string_view source_name) : source_(source_name) {}

  Config Load(const Setting& root) {
    Config config;
    CheckNames(root, kSections);
    if (const Setting* s = Find(root, "milter", Kind::kGroup)) LoadMilter(*s, config.milter);
    if (const Setting* s = Find(root, "signing", Kind::kGroup)) LoadSigning(*s, config.signing);
    if (const Setting* s = Find(root, "keystore", Kind::kGroup)) {
      CheckNames(*s, kKeystoreSettings);
      ReadString(*s, "directory", config.keystore.directory, CheckPath);
    }
    if (const Setting* s = Find(root, "dns", Kind::kGroup)) LoadDns(*s, config.dns);
    if (const Setting* s = Find(root, "log", Kind::kGroup)) LoadLog(*s, config.log);
    if (const Setting* s = Find(root, "metrics", Kind::kGroup)) LoadMetrics(*s, config.metrics);
    if (const Setting* s = Find(root, "domains", Kind::kGroupList)) LoadDomains(*s, config.domains);
    return config;
  }

  bool ok() const { return errors_.empty(); }

  // In file order: the main file's lines first, then each included file's.
  std::string Errors() const {
    std::vector<const Problem*> sorted;
    for (const Problem& p : errors_) sorted.push_back(&p);
    std::stable_sort(sorted.begin(), sorted.end(), [this](const Problem* a, const Problem* b) {
      return std::tuple(a->file != source_, a->file, a->line) <
             std::tuple(b->file != source_, b->file, b->line);
    });
    std::string out;
    for (size_t i = 0; i < sorted.size() && i < kMaxErrors; ++i) {
      if (i > 0) out += '\n';
      out += sorted[i]->text;
    }
    if (errors_.size() > kMaxErrors)
      out += "\n(" + std::to_string(errors_.size() - kMaxErrors) + " more errors not shown)";
    return out;
  }

 private:
  using Normalizer = std::function<util::Result<std::string>(std::string_view)>;
  // Turns the text of one list element into its typed value, or says what is wrong with it.
  template <class T>
  using Parser = std::function<util::Result<T>(std::string_view)>;

  static util::Result<std::string> CheckPath(std::string_view v) {
    RETURN_IF_ERROR(internal::CheckAbsolutePath(v));
    return std::string(v);
  }
  static util::Result<std::string> OptionalPath(std::string_view v) {
    if (v.empty()) return std::string();
    return CheckPath(v);
  }
  static util::Result<std::string> OptionalAccount(std::string_view v) {
    if (!v.empty()) RETURN_IF_ERROR(internal::CheckAccountName(v));
    return std::string(v);
  }

  struct Problem {
    std::string file;
    unsigned line;
    std::string text;
  };

  // Elements of a list may have no line of their own: use the enclosing one's.
  const Setting& Located(const Setting& s) const {
    const Setting* at = &s;
    while (at->getSourceLine() == 0 && !at->isRoot()) at = &at->getParent();
    return *at;
  }
  std::string File(const Setting& s) const {
    const char* file = Located(s).getSourceFile();
    return file != nullptr ? std::string(file) : source_;
  }
  // "FILE:LINE".
  std::string Location(const Setting& s) const {
    return File(s) + ":" + std::to_string(Located(s).getSourceLine());
  }
  std::string Where(const Setting& s) const { return Location(s) + ": "; }

  void Add(const Setting& at, std::string text) {
    errors_.push_back(Problem{File(at), Located(at).getSourceLine(), std::move(text)});
  }

  // "FILE:LINE: PATH = VALUE: MESSAGE".
  void Error(const Setting& s, std::string_view message) {
    Add(s, Where(s) + s.getPath() + " = " + Render(s) + ": " + std::string(message));
  }

  // "FILE:LINE: PATH: MESSAGE", for what concerns a group as a whole.
  void GroupError(const Setting& group, std::string_view message) {
    std::string path = group.isRoot() ? std::string("(top level)") : group.getPath();
    Add(group, Where(group) + path + ": " + std::string(message));
  }

  void CheckNames(const Setting& group, const Names& known) {
    std::string prefix = group.isRoot() ? "" : group.getPath() + ".";
    for (int i = 0; i < group.getLength(); ++i) {
      const Setting& s = group[i];
      std::string_view name = s.getName();
      if (std::find(known.begin(), known.end(), name) != known.end()) continue;
      std::string message = Where(s) + "unknown setting '" + prefix + std::string(name) + "'";
      std::string_view close = internal::ClosestMatch(name, known);
      std::string_view home;
      for (const auto& [section, names] : kSchema) {
        if (names != &known && std::find(names->begin(), names->end(), name) != names->end())
          home = section;
      }
      if (!home.empty() && home == "domains")
        message += ": it belongs in an entry of domains = ( { ... } )";
      else if (!home.empty())
        message += ": it belongs in the " + std::string(home) + " section";
      else if (!close.empty())
        message += ": did you mean '" + prefix + std::string(close) + "'?";
      else
        message += ": remove it; the known settings here are " + OneOf(known);
      Add(s, std::move(message));
    }
  }

  // The member `name` of `group` if it exists and is of the right kind; nullptr otherwise, after
  // recording an error for the wrong kind.
  const Setting* Find(const Setting& group, const char* name, Kind kind) {
    if (!group.exists(name)) return nullptr;
    const Setting& s = group[name];
    if (HasKind(s, kind)) return &s;
    Error(s, ExpectedText(kind));
    return nullptr;
  }

  void ReadString(const Setting& group, const char* name, std::string& out,
                  const Normalizer& normalize) {
    const Setting* s = Find(group, name, Kind::kString);
    if (s == nullptr) return;
    util::Result<std::string> v = normalize(s->c_str());
    if (!v) return Error(*s, v.error().message);
    out = std::move(v).value();
  }

  void ReadBool(const Setting& group, const char* name, bool& out) {
    if (const Setting* s = Find(group, name, Kind::kBool)) out = static_cast<bool>(*s);
  }

  void ReadInt(const Setting& group, const char* name, int& out, int lo, int hi,
               std::string_view why = "") {
    const Setting* s = Find(group, name, Kind::kInt);
    if (s == nullptr) return;
    // No implicit conversion in libconfig++: read each width as what it is.
    long long v = s->getType() == Setting::TypeInt64 ? static_cast<long long>(*s)
                                                     : static_cast<int>(*s);
    if (v < lo || v > hi) {
      return Error(*s, "must be " + std::to_string(lo) + " to " + std::to_string(hi) +
                           std::string(why));
    }
    out = static_cast<int>(v);
  }

  // Every duration has a maximum: beyond it a value is a typo, and a huge one would overflow
  // the clocks it is added to (a rotation thread that never sleeps, signatures that expire
  // before they are made).
  void ReadDuration(const Setting& group, const char* name, seconds& out, seconds min, seconds max,
                    std::string_view why = "") {
    const Setting* s = Find(group, name, Kind::kDuration);
    if (s == nullptr) return;
    util::Result<seconds> d = ParseDuration(s->c_str());
    if (!d) return Error(*s, d.error().message + "; allowed: " + Range(min, max));
    if (*d < min || *d > max) return Error(*s, "must be from " + Range(min, max) + std::string(why));
    out = *d;
  }

  static std::string Range(seconds min, seconds max) {
    return FormatDuration(min) + " to " + FormatDuration(max);
  }

  template <class E>
  void ReadEnum(const Setting& group, const char* name, E& out, const EnumTable<E>& table) {
    const Setting* s = Find(group, name, Kind::kString);
    if (s == nullptr) return;
    std::string_view v = s->c_str();
    Names names;
    for (const auto& [text, value] : table) {
      if (v == text) {
        out = value;
        return;
      }
      names.push_back(text);
    }
    std::string message = "must be " + OneOf(names);
    std::string_view close = internal::ClosestMatch(v, names);
    if (!close.empty()) message += " (did you mean " + Quote(close) + "?)";
    Error(*s, message);
  }

  // A list of strings, each parsed; an element that fails is reported and left out.
  // Returns the list's setting, or nullptr if it is absent or not a list.
  template <class T>
  const Setting* ReadStringList(const Setting& group, const char* name, std::vector<T>& out,
                                const Parser<T>& normalize) {
    const Setting* list = Find(group, name, Kind::kStringList);
    if (list == nullptr) return nullptr;
    std::vector<T> values;
    for (int i = 0; i < list->getLength(); ++i) {
      const Setting& e = (*list)[i];
      if (e.getType() != Setting::TypeString) {
        Error(e, ExpectedText(Kind::kString));
        continue;
      }
      util::Result<T> v = normalize(e.c_str());
      if (!v) {
        Error(e, v.error().message);
        continue;
      }
      values.push_back(std::move(v).value());
    }
    out = std::move(values);
    return list;
  }

  void LoadMilter(const Setting& g, MilterConfig& out) {
    CheckNames(g, kMilterSettings);
    ReadString(g, "socket", out.socket, [](std::string_view v) -> util::Result<std::string> {
      RETURN_IF_ERROR(internal::CheckMilterSocket(v));
      return std::string(v);
    });
    ReadEnum(g, "on_error", out.on_error, kOnErrorValues);
    ReadEnum(g, "on_bad_message", out.on_bad_message, kOnBadMessageValues);
    ReadString(g, "user", out.user, OptionalAccount);
    ReadString(g, "group", out.group, OptionalAccount);
    if (const Setting* s = Find(g, "socket_mode", Kind::kModeString)) {
      util::Result<unsigned> mode = internal::ParseSocketMode(s->c_str());
      if (mode) out.socket_mode = *mode;
      else Error(*s, mode.error().message);
    }
    ReadDuration(g, "stop_timeout", out.stop_timeout, seconds(0), kMaxStopTimeout);
  }

  void LoadSigning(const Setting& g, SigningConfig& out) {
    CheckNames(g, kSigningSettings);
    ReadStringList<util::Cidr>(g, "internal_hosts", out.internal_hosts, util::Cidr::Parse);
    ReadBool(g, "sign_authenticated", out.sign_authenticated);
    if (const Setting* s = Find(g, "canonicalization", Kind::kString)) {
      std::string_view v = s->c_str();
      // The signer also reads "simple" alone and any case, as c= in mail may be; the file
      // names both halves in lowercase, as the signer writes them back.
      util::Result<signer::Canonicalization> c = signer::ParseCanonicalization(v);
      if (c && signer::FormatCanonicalization(*c) == v) {
        out.canonicalization = *c;
      } else if (v == "relaxed" || v == "simple") {
        Error(*s, "name both header and body canonicalization: \"" + std::string(v) + "/" +
                      std::string(v) + "\"; \"relaxed/relaxed\" survives most relays");
      } else {
        Error(*s, "must be " + OneOf(kCanonicalizations) + " (header/body)");
      }
    }
    ReadStringList<std::string>(g, "headers", out.headers, internal::NormalizeHeaderName);
    ReadStringList<std::string>(g, "oversign", out.oversign, internal::NormalizeHeaderName);
    ReadDuration(g, "signature_lifetime", out.signature_lifetime, seconds(0), kMaxSignatureLifetime,
                 " (0s: signatures without x=)");
    ReadInt(g, "max_header_fields", out.max_header_fields, 100, 1000000,
            " (header fields per message; real mail has tens)");
    ReadInt(g, "max_header_bytes", out.max_header_bytes, 64 * 1024, 1024 * 1024 * 1024,
            " (bytes of header per message; real mail has a few KiB)");
  }

  void LoadDns(const Setting& g, DnsConfig& out) {
    CheckNames(g, kDnsSettings);
    ReadStringList<util::ServerAddress>(
        g, "resolvers", out.resolvers,
        [](std::string_view v) { return util::ServerAddress::Parse(v, 53); });
    ReadBool(g, "check_authoritative", out.check_authoritative);
    int port = out.authoritative_port;
    ReadInt(g, "authoritative_port", port, 1, 65535);
    out.authoritative_port = static_cast<uint16_t>(port);
    ReadDuration(g, "min_propagation", out.min_propagation, seconds(0), kMaxMinPropagation);
    ReadDuration(g, "poll", out.poll, seconds(1), kMaxPoll);
    ReadDuration(g, "timeout", out.timeout, seconds(1), kMaxDnsTimeout);
  }

  void LoadMetrics(const Setting& g, MetricsConfig& out) {
    CheckNames(g, kMetricsSettings);
    const Setting* s = Find(g, "listen", Kind::kString);
    if (s == nullptr || std::string_view(s->c_str()).empty()) return;
    auto address = util::ServerAddress::Parse(s->c_str(), kDefaultMetricsPort);
    // ServerAddress's own messages speak of resolvers; this one names the setting's forms.
    if (!address || address->port == 0)
      return Error(*s, "must be \"IPv4:PORT\" or \"[IPv6]:PORT\": an IP address, not a name, and a port "
                       "from 1 to 65535 (e.g. \"127.0.0.1:9795\", \"[::1]:9795\")");
    out.listen = std::move(*address);
  }

  void LoadLog(const Setting& g, LogConfig& out) {
    CheckNames(g, kLogSettings);
    ReadEnum(g, "target", out.target, kLogTargetValues);
    ReadEnum(g, "level", out.level, kLogLevelValues);
    ReadString(g, "audit", out.audit, OptionalPath);
  }

  void LoadDomains(const Setting& list, std::vector<DomainConfig>& out) {
    std::map<std::string, const Setting*> seen;  // domain -> its entry
    for (int i = 0; i < list.getLength(); ++i) {
      const Setting& entry = list[i];
      if (!entry.isGroup()) {
        Error(entry, "expected a group in braces: { domain = \"example.com\"; ... }");
        continue;
      }
      size_t errors_before = errors_.size();
      DomainConfig d = LoadDomain(entry);
      if (d.domain.empty()) continue;  // reported by LoadDomain
      auto [it, inserted] = seen.emplace(d.domain, &entry);
      if (!inserted) {
        Error(entry["domain"], d.domain + " is already configured in " + it->second->getPath() +
                                   " (" + Location(*it->second) +
                                   "): merge the two entries, or list each domain once");
      }
      if (errors_.size() == errors_before) out.push_back(std::move(d));
    }
  }

  DomainConfig LoadDomain(const Setting& g) {
    DomainConfig d;
    CheckNames(g, kDomainSettings);
    ReadString(g, "domain", d.domain, internal::NormalizeDomainName);
    if (!g.exists("domain"))
      GroupError(g, "no domain: add domain = \"example.com\"; to this entry");
    ReadString(g, "stream", d.stream, [](std::string_view v) -> util::Result<std::string> {
      RETURN_IF_ERROR(internal::CheckStream(v));
      return std::string(v);
    });
    LoadAlgorithms(g, d);
    ReadInt(g, "bits", d.bits, 1024, 4096,
            " (RFC 8301: RSA keys of at least 1024 bits; 2048 is the usual choice)");
    ReadInt(g, "active_keys", d.active_keys, 1, 3);
    // As short as a minute for labs and the demo; `check` warns below 5 days.
    ReadDuration(g, "key_lifetime", d.key_lifetime, seconds(60), kMaxKeyLifetime);
    ReadInt(g, "prepublish", d.prepublish, 0, 3);
    ReadDuration(g, "grace", d.grace, seconds(0), kMaxGrace);
    ReadString(g, "publish_hook", d.publish_hook, OptionalPath);
    ReadDuration(g, "hook_timeout", d.hook_timeout, seconds(1), kMaxHookTimeout);
    ReadBool(g, "subdomains", d.subdomains);
    if (g.exists("delegation")) {
      LoadDelegation(g, d);
    } else {
      CheckSelectorFormat(g, d);
    }
    return d;
  }

  // delegation = { zone = "customer-com.keys.example.net"; slots = ["k1", "k2", "k3", "k4"]; };
  void LoadDelegation(const Setting& g, DomainConfig& d) {
    const Setting* group = Find(g, "delegation", Kind::kGroup);
    if (group == nullptr) return;
    if (g.exists("selector_format"))
      Error(g["selector_format"], "has no effect with delegation, whose selectors are its slots: remove it");
    CheckNames(*group, kDelegationSettings);
    Delegation delegation;
    ReadString(*group, "zone", delegation.zone, internal::NormalizeDomainName);
    if (!group->exists("zone"))
      return GroupError(*group, "no zone: add zone = \"customer-com.keys.example.net\"; (the zone the "
                                "publish hook writes, which the domain's CNAMEs point into)");
    if (!delegation.zone.empty() && delegation.zone == d.domain)
      return Error((*group)["zone"], "is the domain itself: a delegation zone is another zone, which "
                                     "the domain's CNAMEs point into; without one, remove delegation");
    const Setting* list = Find(*group, "slots", Kind::kStringList);
    if (list == nullptr) {
      if (!group->exists("slots"))
        GroupError(*group, "no slots: add slots = [\"k1\", \"k2\", \"k3\", \"k4\"]; (the selectors "
                           "the domain's owner points CNAMEs at, once)");
      return;
    }
    size_t errors_before = errors_.size();
    for (int i = 0; i < list->getLength(); ++i) {
      const Setting& e = (*list)[i];
      if (e.getType() != Setting::TypeString) {
        Error(e, ExpectedText(Kind::kString));
        continue;
      }
      std::string slot = e.c_str();
      std::transform(slot.begin(), slot.end(), slot.begin(), [](unsigned char c) { return std::tolower(c); });
      util::Status st = internal::CheckSelector(slot, delegation.zone.size() > d.domain.size() ? delegation.zone : d.domain);
      if (!st) {
        Error(e, "is not a usable selector: " + st.error().message);
        continue;
      }
      if (std::find(delegation.slots.begin(), delegation.slots.end(), slot) != delegation.slots.end()) {
        Error(e, "listed twice: list each slot once");
        continue;
      }
      delegation.slots.push_back(std::move(slot));
    }
    if (errors_.size() != errors_before) return;
    if (static_cast<int>(delegation.slots.size()) < d.SlotsNeeded())
      return Error(*list, "has " + std::to_string(delegation.slots.size()) + " slot(s), but " +
                              std::to_string(d.algorithms.size()) + " algorithm(s) x (active_keys " +
                              std::to_string(d.active_keys) + " + prepublish " + std::to_string(d.prepublish) +
                              ") + 1 = " + std::to_string(d.SlotsNeeded()) +
                              " are needed: a slot takes a new key only once the key it held is revoked and "
                              "grace has passed; add slots (and their CNAMEs at the domain)");
    d.delegation = std::move(delegation);
  }

  // signer::ParseAlgorithm reads any case, as a= in mail may be; the file spells each name
  // exactly, as it does every other value.
  static util::Result<signer::Algorithm> ParseAlgorithmSetting(std::string_view v) {
    util::Result<signer::Algorithm> a = signer::ParseAlgorithm(v);
    if (a && signer::AlgorithmName(*a) == v) return *a;
    if (v == "rsa-sha1")
      return util::Err(util::ErrorCode::kInvalidArgument,
                       "rsa-sha1 is obsolete (RFC 8301): use " +
                           Quote(signer::AlgorithmName(signer::Algorithm::kRsaSha256)));
    std::string message = "unknown algorithm: use " + OneOf(kAlgorithmNames);
    std::string_view close = internal::ClosestMatch(v, kAlgorithmNames);
    if (!close.empty()) message += " (did you mean " + Quote(close) + "?)";
    return util::Err(util::ErrorCode::kInvalidArgument, message);
  }

  void LoadAlgorithms(const Setting& g, DomainConfig& d) {
    std::vector<signer::Algorithm> algorithms;
    const Setting* list = ReadStringList<signer::Algorithm>(g, "algorithms", algorithms,
                                                            ParseAlgorithmSetting);
    if (list == nullptr) return;
    for (int i = 0; i < list->getLength(); ++i) {
      const Setting& e = (*list)[i];
      for (int j = 0; j < i; ++j) {
        const Setting& earlier = (*list)[j];
        if (e.getType() == Setting::TypeString && earlier.getType() == Setting::TypeString &&
            std::string_view(e.c_str()) == earlier.c_str()) {
          Error(e, "listed twice: list each algorithm once");
          break;
        }
      }
    }
    if (list->getLength() == 0)
      Error(*list, "lists no algorithm: add \"rsa-sha256\" (and \"ed25519-sha256\" to dual-sign)");
    d.algorithms = std::move(algorithms);
  }

  // Cross-checks the selector format against the stream, the algorithms and DNS's limits.
  void CheckSelectorFormat(const Setting& g, DomainConfig& d) {
    const Setting* format_setting = Find(g, "selector_format", Kind::kString);
    if (g.exists("selector_format") && format_setting == nullptr) return;  // reported
    const std::string text =
        format_setting != nullptr ? format_setting->c_str() : d.selector_format.text();
    auto report = [&](std::string_view message) {
      if (format_setting != nullptr) Error(*format_setting, message);
      else GroupError(g, "default selector_format " + Quote(text) + ": " + std::string(message));
    };
    util::Result<signer::SelectorFormat> format = signer::SelectorFormat::Parse(text);
    if (!format) return report(format.error().message);
    d.selector_format = *format;
    if (format->has_stream() && d.stream.empty()) {
      if (g.exists("stream")) return;  // reported as invalid
      return report("it uses {stream}, but this entry has no stream: add stream = \"mta1\"; (a "
                    "short name for this server or mail stream)");
    }
    if (!format->has_alg() && d.algorithms.size() > 1)
      return report("it has no {alg}, but " + std::to_string(d.algorithms.size()) +
                    " algorithms sign, so their selectors would collide: add {alg}");
    if (d.domain.empty()) return;
    // The rotation engine names keys with the same Expand(); these sample values stand for its
    // long selectors (two-digit month and day, a three-digit {n}).
    for (signer::Algorithm algorithm : d.algorithms) {
      signer::SelectorValues values;
      values.stream = d.stream;
      values.algorithm = algorithm;
      values.bits = d.bits;
      values.date = std::chrono::year{2026} / std::chrono::January / std::chrono::day{31};
      values.n = 999;
      std::string selector = format->Expand(values);
      util::Status st = internal::CheckSelector(selector, d.domain);
      if (st) continue;
      // With the default format, the stream is what the user wrote that made it too long.
      if (format_setting == nullptr && g.exists("stream"))
        return Error(g["stream"], "with the default selector_format " + Quote(text) + ", " +
                                      st.error().message);
      return report(st.error().message);
    }
  }

  std::string source_;
  std::vector<Problem> errors_;
};

// The line of the first string that runs past the end of its line, or 0. libconfig allows such
// strings, so this is only a hint once parsing has failed: a forgotten closing quote makes
// libconfig report a line far below the mistake.
int UnclosedQuoteLine(std::string_view text) {
  int line = 1;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\n') {
      ++line;
    } else if (c == '#' || (c == '/' && i + 1 < text.size() && text[i + 1] == '/')) {
      while (i + 1 < text.size() && text[i + 1] != '\n') ++i;
    } else if (c == '/' && i + 1 < text.size() && text[i + 1] == '*') {
      size_t end = text.find("*/", i + 2);
      if (end == std::string_view::npos) return 0;
      for (; i < end + 1; ++i) line += text[i] == '\n';
    } else if (c == '"') {
      for (++i; i < text.size() && text[i] != '"'; ++i) {
        if (text[i] == '\\') ++i;
        else if (text[i] == '\n') return line;
      }
    }
  }
  return 0;
}

std::string ParseErrorHint(std::string_view error) {
  if (error == "syntax error")
    return "syntax error: check this line and the one before it for a missing value, '=', "
           "quote or bracket";
  if (error == "duplicate setting name")
    return "this setting appears twice in its section: keep one";
  return std::string(error);
}

util::Result<Config> Parse(std::string_view text, std::string_view source_name,
                           const std::string& include_dir) {
  if (text.find('\0') != std::string_view::npos)
    return util::Err(util::ErrorCode::kInvalidArgument,
                     std::string(source_name) + ": contains a NUL byte: not a text file");
  try {
    libconfig::Config parsed;
    if (!include_dir.empty()) parsed.setIncludeDir(include_dir.c_str());
    parsed.readString(std::string(text));
    Loader loader(source_name);
    Config config = loader.Load(parsed.getRoot());
    if (!loader.ok()) return util::Err(util::ErrorCode::kInvalidArgument, loader.Errors());
    return config;
  } catch (const libconfig::ParseException& e) {
    std::string file = e.getFile() != nullptr ? e.getFile() : std::string(source_name);
    int quote_line = e.getFile() == nullptr ? UnclosedQuoteLine(text) : 0;
    if (quote_line > 0 && quote_line <= e.getLine())
      return util::Err(util::ErrorCode::kInvalidArgument,
                       file + ":" + std::to_string(quote_line) +
                           ": syntax error: the string opened on this line is not closed on it "
                           "(the parser gave up at line " + std::to_string(e.getLine()) + ")");
    return util::Err(util::ErrorCode::kInvalidArgument,
                     file + ":" + std::to_string(e.getLine()) + ": " +
                         ParseErrorHint(e.getError()));
  } catch (const libconfig::SettingException& e) {
    return util::Err(util::ErrorCode::kInternal, std::string(source_name) + ": setting " +
                                                     e.getPath() + ": " + e.what());
  } catch (const libconfig::ConfigException& e) {
    return util::Err(util::ErrorCode::kInternal, std::string(source_name) + ": " + e.what());
  }
}

}  // namespace

util::Result<Config> LoadConfig(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, util::ReadFile(path));
  std::string dir = std::filesystem::path(path).parent_path().string();
  return Parse(text, path, dir.empty() ? "." : dir);
}

util::Result<Config> ParseConfig(std::string_view text, std::string_view source_name) {
  return Parse(text, source_name, "");
}

std::vector<std::string> KnownSettings() {
  std::vector<std::string> out;
  for (const auto& [section, names] : kSchema) {
    std::string prefix = std::string(section) + (section == "domains" ? ".[]." : ".");
    for (std::string_view name : *names) out.push_back(prefix + std::string(name));
  }
  for (std::string_view name : kDelegationSettings) out.push_back("domains.[].delegation." + std::string(name));
  return out;
}

}  // namespace dkimrotor::conf
