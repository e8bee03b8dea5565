#include "migrate/opendkim_migration.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <cstring>
#include <set>
#include <stdexcept>

#include "util/cidr.h"
#include "util/file.h"

namespace dkimrotor::migrate {
namespace {

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string Trim(std::string_view s) {
  const char* ws = " \t\r\n";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return {};
  return std::string(s.substr(b, s.find_last_not_of(ws) - b + 1));
}

// Replaces what looks like key data (a run of 40 or more base64 characters with a digit, an
// upper-case and a lower-case letter: paths and names have dots, dashes or underscores long
// before that) with a mark, so that a key pasted where a setting or a path was expected is
// never printed back.
std::string LeaveOutKeyData(const std::string& line) {
  auto is_b64 = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/' || c == '='; };
  std::string out;
  size_t i = 0;
  while (i < line.size()) {
    size_t end = i;
    while (end < line.size() && is_b64(line[end])) ++end;
    if (end == i) {
      out.push_back(line[i++]);
      continue;
    }
    const std::string_view run(line.data() + i, end - i);
    auto has = [&](int (*pred)(int)) {
      return std::any_of(run.begin(), run.end(), [&](char c) { return pred(static_cast<unsigned char>(c)) != 0; });
    };
    if (run.size() >= 40 && has(::isdigit) && has(::isupper) && has(::islower)) out += "[key data left out]";
    else out.append(run);
    i = end;
  }
  return out;
}

bool StartsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

// Lines without comments ('#' to the end of the line, as opendkim.conf(5) and flat-file
// datasets have it), CR and surrounding blanks; blank lines dropped. Each keeps its number.
std::vector<std::pair<int, std::string>> ContentLines(const std::string& text) {
  std::vector<std::pair<int, std::string>> out;
  int number = 0;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + pos, end - pos);
    ++number;
    if (size_t hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    std::string t = Trim(line);
    if (!t.empty()) out.emplace_back(number, std::move(t));
    if (end == text.size()) break;
    pos = end + 1;
  }
  return out;
}

// "first rest": the first whitespace-separated token and the rest, trimmed.
std::pair<std::string, std::string> SplitFirst(const std::string& line) {
  const size_t ws = line.find_first_of(" \t");
  if (ws == std::string::npos) return {line, ""};
  return {line.substr(0, ws), Trim(std::string_view(line).substr(ws))};
}

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (true) {
    size_t end = s.find(sep, pos);
    std::string part = Trim(std::string_view(s).substr(pos, end == std::string::npos ? std::string::npos : end - pos));
    if (!part.empty()) out.push_back(std::move(part));
    if (end == std::string::npos) break;
    pos = end + 1;
  }
  return out;
}

// The dataset kinds that are databases or scripts (opendkim(8) "DATA SETS").
bool IsDatabase(const std::string& v) {
  for (const char* p : {"db:", "dsn:", "ldap:", "ldaps:", "ldapi:", "lua:", "memcache:", "redis:", "mdb:", "erlang:"})
    if (StartsWith(v, p)) return true;
  return v.size() > 3 && v.ends_with(".db");
}

bool IsYes(const std::string& v) { return !v.empty() && std::strchr("TtYy1", v[0]) != nullptr; }

struct Setting {
  std::string name;  // as written
  std::string value;
  std::string where;  // "FILE:LINE"
};

// One entry of a dataset: a key and, for tables, its value.
struct Entry {
  std::string key;
  std::string value;
  std::string where;
};

struct Dataset {
  bool refile = false;
  std::vector<Entry> entries;
};

class Planner {
 public:
  explicit Planner(MigrationPlan& plan) : plan_(plan) {}

  util::Status ReadConf(const std::string& path, int depth) {
    ASSIGN_OR_RETURN(std::string text, util::ReadFile(path));
    for (auto& [number, line] : ContentLines(text)) {
      auto [name, value] = SplitFirst(line);
      const std::string where = path + ":" + std::to_string(number);
      if (Lower(name) == "include") {
        if (depth >= 5) {
          Note(where + ": Include " + value + ": not read: OpenDKIM nests at most five levels");
          continue;
        }
        const std::string included = StartsWith(value, "/") ? value : util::FolderOf(path) + "/" + value;
        if (auto st = ReadConf(included, depth + 1); !st)
          Note(where + ": Include " + value + ": not read: " + st.error().message);
        continue;
      }
      // A later line overrides an earlier one, and the override is the one reported.
      std::string key = Lower(name);
      if (settings_.count(key) == 0) order_.push_back(key);
      settings_[key] = Setting{name, value, where};
    }
    return util::Ok();
  }

  void Plan() {
    base_dir_ = util::FolderOf(plan_.source);
    if (auto* s = Take("basedirectory")) base_dir_ = s->value;
    Mode();
    Signing();
    Simple();
    InternalHosts();
    Leftovers();
  }

 private:
  void Note(const std::string& line) { plan_.notes.push_back(LeaveOutKeyData(line)); }

  const Setting* Take(const std::string& key) {
    used_.insert(key);
    auto it = settings_.find(key);
    return it == settings_.end() ? nullptr : &it->second;
  }

  std::string Where(const Setting& s) const { return s.where + ": " + s.name + " " + s.value; }

  // opendkim(8) "DATA SETS": file:, refile:, csl:, a path starting with '/', or else a
  // comma-separated list. Databases and scripts are not read.
  std::optional<Dataset> ReadDataset(const Setting& s) {
    const std::string& v = s.value;
    Dataset d;
    std::string path;
    if (StartsWith(v, "refile:")) {
      d.refile = true;
      path = v.substr(7);
    } else if (StartsWith(v, "file:")) {
      path = v.substr(5);
    } else if (StartsWith(v, "/")) {
      path = v;
    } else if (IsDatabase(v)) {
      Note(Where(s) + ": not carried over: dkimrotor migrate reads only flat files, refile: and "
                      "comma-separated lists; export the table to a file and migrate again");
      return std::nullopt;
    } else {
      for (auto& item : Split(StartsWith(v, "csl:") ? v.substr(4) : v, ','))
        d.entries.push_back(Entry{item, "", s.where});
      return d;
    }
    if (!StartsWith(path, "/")) path = base_dir_ + "/" + path;
    auto text = util::ReadFile(path);
    if (!text) {
      Note(Where(s) + ": not carried over: " + text.error().message);
      return std::nullopt;
    }
    for (auto& [number, line] : ContentLines(*text)) {
      auto [key, value] = SplitFirst(line);
      d.entries.push_back(Entry{key, value, path + ":" + std::to_string(number)});
    }
    return d;
  }

  void Mode() {
    const Setting* s = Take("mode");
    if (!s) return;
    if (s->value.find('v') != std::string::npos)
      Note(Where(*s) + ": verifying is not carried over: dkimrotor signs only; keep verification in your "
                       "inbound filter (e.g. rspamd)");
    if (s->value.find('s') == std::string::npos)
      Note(Where(*s) + ": OpenDKIM did not sign here; any domains the new configuration lists sign once dkimrotor runs");
  }

  // Where a From pattern of the SigningTable points: a whole domain, maybe with its
  // subdomains, or nothing dkimrotor can express (the reason says why).
  struct Target {
    std::string domain;
    bool subdomains = false;
    std::string why_not;
  };

  static Target FromPattern(const std::string& raw, bool refile) {
    const std::string p = Lower(raw);
    Target t;
    std::string host = p;
    if (size_t at = p.rfind('@'); at != std::string::npos) {
      const std::string local = p.substr(0, at);
      host = p.substr(at + 1);
      if (local != "*") {
        t.why_not = "it names single addresses; dkimrotor signs whole domains";
        return t;
      }
    } else if (refile && StartsWith(p, "*") && !StartsWith(p, "*.")) {
      // "*example.com": any address ending so, other domains (badexample.com) included.
      if (p.find('*', 1) == std::string::npos && p.size() > 1) {
        t.domain = p.substr(1);
        t.subdomains = true;
        return t;
      }
    } else if (refile && !StartsWith(p, "*")) {
      t.why_not = "a refile pattern without '@' or '*' matches no address";
      return t;
    }
    if (refile && StartsWith(host, "*.")) {
      t.subdomains = true;
      host = host.substr(2);
    } else if (!refile && StartsWith(host, ".")) {
      t.subdomains = true;
      host = host.substr(1);
    }
    if (host.empty() || host.find('*') != std::string::npos) {
      t.why_not = host == "*" || host.empty() ? "it matches every domain; dkimrotor signs the domains it lists"
                                              : "dkimrotor matches a domain and its subdomains, not other wildcards";
      return t;
    }
    t.domain = host;
    return t;
  }

  DomainPlan& DomainEntry(const std::string& domain) {
    for (auto& d : plan_.domains)
      if (d.domain == domain) return d;
    plan_.domains.push_back(DomainPlan{domain, false, {}});
    return plan_.domains.back();
  }

  // Adds a key to a domain unless its selector is there already.
  void AddKey(DomainPlan& d, KeyToImport key, const std::string& where) {
    for (const auto& k : d.keys) {
      if (k.selector != key.selector) continue;
      if (k.key_file != key.key_file)
        Note(where + ": selector " + key.selector + " of " + d.domain + " names another key file (" + key.key_file +
             ") than " + k.key_name + " (" + k.key_file + "): only the first is imported");
      return;
    }
    d.keys.push_back(std::move(key));
  }

  // A key file as OpenDKIM finds it: a path starting with '/', './' or '../' (relative ones
  // from BaseDirectory, else the folder of opendkim.conf), with '%' the From domain; anything
  // else is the key itself, which is not copied out of a table.
  std::optional<std::string> KeyFilePath(std::string file, const std::string& from_domain) {
    if (!(StartsWith(file, "/") || StartsWith(file, "./") || StartsWith(file, "../"))) return std::nullopt;
    for (size_t pos; (pos = file.find('%')) != std::string::npos;) file.replace(pos, 1, from_domain);
    if (!StartsWith(file, "/")) file = base_dir_ + "/" + file;
    return file;
  }

  void Signing() {
    const Setting* key_table = Take("keytable");
    const Setting* signing_table = Take("signingtable");
    const Setting* domain = Take("domain");
    const Setting* selector = Take("selector");
    const Setting* key_file = Take("keyfile");
    const Setting* subdomains = Take("subdomains");
    // dkimrotor signs once per algorithm of a domain, its keys of one algorithm taking turns:
    // with or without MultipleSignatures, every key a domain's mail was signed with is imported.
    Take("multiplesignatures");
    if (key_table) {
      if (domain || selector || key_file)
        Note(key_table->where + ": Domain, Selector and KeyFile are ignored next to a KeyTable (as OpenDKIM "
                                "ignores them)");
      if (!signing_table) {
        Note(Where(*key_table) + ": no SigningTable says which mail each key signs: no key imported; add "
                                 "domains to the new configuration and import keys with dkimrotor keys import");
        return;
      }
      TableMode(*key_table, *signing_table);
      return;
    }
    if (signing_table) Note(Where(*signing_table) + ": not carried over: a SigningTable needs a KeyTable");
    if (!domain && !selector && !key_file) return;
    if (!domain || !selector || !key_file) {
      Note(std::string(domain ? domain->where : selector ? selector->where : key_file->where) +
           ": single-key mode needs Domain, Selector and KeyFile together: no key imported");
      return;
    }
    SingleKeyMode(*domain, *selector, *key_file, subdomains && IsYes(subdomains->value));
  }

  void SingleKeyMode(const Setting& domain, const Setting& selector, const Setting& key_file, bool subdomains) {
    auto domains = ReadDataset(domain);
    if (!domains) return;
    for (const Entry& e : domains->entries) {
      const std::string name = Lower(e.key);
      auto path = KeyFilePath(key_file.value, name);
      if (!path) {
        Note(key_file.where + ": KeyFile is not a path starting with '/', './' or '../': no key imported");
        return;
      }
      DomainPlan& d = DomainEntry(name);
      d.subdomains |= subdomains;
      AddKey(d, KeyToImport{Lower(selector.value), *path, "KeyFile"}, key_file.where);
    }
  }

  void TableMode(const Setting& key_table_setting, const Setting& signing_table_setting) {
    auto key_table = ReadDataset(key_table_setting);
    auto signing_table = ReadDataset(signing_table_setting);
    if (!key_table || !signing_table) return;
    struct KeyRow {
      std::string domain, selector, file, where;
    };
    std::map<std::string, KeyRow> keys;
    for (const Entry& e : key_table->entries) {
      // DOMAIN:SELECTOR:KEYFILE; the key file (or key) is the rest after the second colon.
      const size_t a = e.value.find(':');
      const size_t b = a == std::string::npos ? a : e.value.find(':', a + 1);
      if (b == std::string::npos) {
        Note(e.where + ": KeyTable entry " + e.key + " is not DOMAIN:SELECTOR:KEYFILE: skipped");
        continue;
      }
      keys[e.key] = KeyRow{Lower(Trim(e.value.substr(0, a))), Lower(Trim(e.value.substr(a + 1, b - a - 1))),
                           Trim(e.value.substr(b + 1)), e.where};
    }
    std::set<std::string> used;
    for (const Entry& e : signing_table->entries) {
      std::vector<std::string> fields = Split(e.value, ':');
      if (fields.size() == 1) fields = Split(e.value, ' ');
      const std::string line = e.where + ": SigningTable " + e.key + " " + e.value;
      if (fields.empty()) {
        Note(line + ": no key name: skipped");
        continue;
      }
      const Target target = FromPattern(e.key, signing_table->refile);
      if (!target.why_not.empty()) {
        Note(line + ": not carried over: " + target.why_not);
        continue;
      }
      if (fields.size() > 1) Note(line + ": the signer (i=) is not carried over: dkimrotor signs without i=");
      std::string name = fields[0] == "%" ? target.domain : fields[0];
      auto it = keys.find(name);
      if (it == keys.end()) {
        Note(line + ": no KeyTable entry " + name + ": skipped");
        continue;
      }
      used.insert(name);
      const KeyRow& k = it->second;
      const std::string d = k.domain == "%" ? target.domain : k.domain;
      bool subdomains = target.subdomains;
      if (target.domain != d) {
        if (target.domain.size() > d.size() && target.domain.ends_with("." + d)) {
          Note(line + ": mail from " + target.domain + " signed with d=" + d + ": dkimrotor signs " + d +
               " and all its subdomains with it");
          subdomains = true;
        } else {
          Note(line + ": not carried over: mail from " + target.domain + " signed with d=" + d +
               " (another domain); dkimrotor signs each From domain with its own keys");
          continue;
        }
      }
      auto path = KeyFilePath(k.file, target.domain);
      if (!path) {
        Note(k.where + ": KeyTable entry " + name + " holds the key itself, not a file: not imported; save it to "
                       "a file (mode 0600) and run dkimrotor keys import");
        continue;
      }
      DomainPlan& domain = DomainEntry(d);
      domain.subdomains |= subdomains;
      AddKey(domain, KeyToImport{k.selector, *path, name}, k.where);
    }
    for (const auto& [name, k] : keys)
      if (used.count(name) == 0)
        Note(k.where + ": KeyTable entry " + name + " (" + k.selector + "._domainkey." + k.domain +
             ") is not used by the SigningTable: not imported");
  }

  void InternalHosts() {
    const Setting* s = Take("internalhosts");
    if (!s) return;
    auto set = ReadDataset(*s);
    if (!set) return;
    std::vector<std::string> hosts;
    for (const Entry& e : set->entries) {
      // A file line may hold several comma-separated entries too.
      for (std::string h : Split(e.key, ',')) {
        if (StartsWith(h, "!")) {
          Note(e.where + ": InternalHosts " + h + ": not carried over: dkimrotor has no exclusions; mail from " +
               h.substr(1) + " is signed if a listed network contains it");
          continue;
        }
        if (Lower(h) == "localhost") {
          hosts.push_back("127.0.0.1/32");
          hosts.push_back("::1/128");
          continue;
        }
        std::string address = h;
        if (StartsWith(address, "[")) address.erase(0, 1);
        if (size_t close = address.find(']'); close != std::string::npos) address.erase(close, 1);
        auto cidr = util::Cidr::Parse(address);
        if (!cidr) {
          Note(e.where + ": InternalHosts " + h + ": not carried over: " + cidr.error().message +
               " (signing.internal_hosts takes networks, not host names)");
          continue;
        }
        if (std::find(hosts.begin(), hosts.end(), address) == hosts.end()) hosts.push_back(address);
      }
    }
    plan_.internal_hosts = hosts;
  }

  static std::optional<std::string> OneCanonicalization(std::string v) {
    v = Lower(Trim(v));
    if (v == "simple" || v == "relaxed") return v;
    return std::nullopt;
  }

  std::optional<std::vector<std::string>> HeaderList(const Setting& s) {
    auto set = ReadDataset(s);
    if (!set) return std::nullopt;
    std::vector<std::string> names;
    for (const Entry& e : set->entries)
      for (const std::string& n : Split(e.key, ',')) {
        if (n == "*") {
          Note(Where(s) + ": '*' (every header field) is not carried over: dkimrotor signs the fields it lists");
          continue;
        }
        names.push_back(Lower(n));
      }
    return names;
  }

  std::optional<long long> Seconds(const Setting& s, long long low, long long high) {
    try {
      size_t used = 0;
      long long v = std::stoll(s.value, &used);
      if (used == s.value.size() && v >= low && v <= high) return v;
    } catch (const std::exception&) {
    }
    Note(Where(s) + ": not carried over: not a number of seconds from " + std::to_string(low) + " to " +
         std::to_string(high));
    return std::nullopt;
  }

  void OnAction(const Setting& s, bool signing) {
    if (!signing) {
      Note(Where(s) + ": not carried over: a verification result; dkimrotor does not verify");
      return;
    }
    const char c = s.value.empty() ? '\0' : static_cast<char>(std::tolower(static_cast<unsigned char>(s.value[0])));
    if (c == 't' || c == 'a') {
      plan_.on_error = c == 't' ? "tempfail" : "accept";
      return;
    }
    Note(Where(s) + ": not carried over: milter.on_error is tempfail or accept");
  }

  void Simple() {
    if (const Setting* s = Take("socket")) plan_.socket = s->value;
    if (const Setting* s = Take("canonicalization")) {
      const size_t slash = s->value.find('/');
      auto header = OneCanonicalization(s->value.substr(0, slash));
      // OpenDKIM: one word is the header's canonicalization; the body's stays simple.
      auto body = slash == std::string::npos ? std::optional<std::string>("simple")
                                             : OneCanonicalization(s->value.substr(slash + 1));
      if (header && body) plan_.canonicalization = *header + "/" + *body;
      else Note(Where(*s) + ": not carried over: not simple or relaxed");
    } else {
      Note("Canonicalization is not set: OpenDKIM signed simple/simple; dkimrotor signs relaxed/relaxed, "
           "which survives relays better (set signing.canonicalization to keep simple/simple)");
    }
    if (const Setting* s = Take("signheaders")) plan_.headers = HeaderList(*s);
    if (const Setting* s = Take("oversignheaders")) plan_.oversign = HeaderList(*s);
    if (const Setting* s = Take("signaturettl")) plan_.signature_lifetime = Seconds(*s, 0, 366LL * 86400);
    if (const Setting* s = Take("dnstimeout")) plan_.dns_timeout = Seconds(*s, 1, 300);
    if (const Setting* s = Take("syslog")) plan_.syslog = IsYes(s->value);
    if (const Setting* s = Take("userid")) {
      const size_t colon = s->value.find(':');
      plan_.user = s->value.substr(0, colon);
      if (colon != std::string::npos) plan_.group = s->value.substr(colon + 1);
    }
    if (const Setting* s = Take("umask")) {
      try {
        size_t used = 0;
        unsigned long mask = std::stoul(s->value, &used, 8);
        if (used != s->value.size() || mask > 0777) throw std::invalid_argument("umask");
        // OpenDKIM's socket is made under this umask; dkimrotor sets the bits outright.
        plan_.socket_mode = 0666U & ~static_cast<unsigned>(mask);
      } catch (const std::exception&) {
        Note(Where(*s) + ": not carried over: not an octal umask");
      }
    }
    if (const Setting* s = Take("nameservers")) {
      std::vector<std::string> servers;
      for (const std::string& n : Split(s->value, ',')) servers.push_back(n);
      plan_.resolvers = servers;
    }
    if (const Setting* s = Take("signaturealgorithm"); s && Lower(s->value) != "rsa-sha256")
      Note(Where(*s) + ": not carried over: dkimrotor signs with the algorithm of each key (domains.[].algorithms)");
    for (const char* name : {"on-default", "on-internalerror", "on-signatureerror"})
      if (const Setting* s = Take(name)) OnAction(*s, true);
    for (const char* name : {"on-badsignature", "on-dnserror", "on-keynotfound", "on-nosignature", "on-security"})
      if (const Setting* s = Take(name)) OnAction(*s, false);
    if (const Setting* s = Take("externalignorelist"))
      Note(Where(*s) + ": not carried over, not needed: it only quiets OpenDKIM's log; dkimrotor neither "
                       "signs such hosts' mail nor logs them (listing them in internal_hosts would sign their mail)");
  }

  void Leftovers() {
    // Settings with nothing to carry: process management, logging detail, and what dkimrotor
    // always does (RequireSafeKeys: key files must be 0600).
    static const std::set<std::string> kNothingToCarry = {
        "pidfile",        "autorestart",    "autorestartcount", "autorestartrate", "background",
        "syslogsuccess",  "syslogfacility", "syslogname",       "logwhy",          "logresults",
        "requiresafekeys", "temporarydirectory", "trustanchorfile", "softwareheader", "quarantine",
        "enablecoredumps", "resolverconfiguration"};
    for (const std::string& key : order_) {
      if (used_.count(key) != 0 || kNothingToCarry.count(key) != 0) continue;
      const Setting& s = settings_.at(key);
      Note(Where(s) + ": not carried over: dkimrotor has no such setting");
    }
  }

  MigrationPlan& plan_;
  std::map<std::string, Setting> settings_;  // by lowercase name
  std::vector<std::string> order_;           // lowercase names as first seen
  std::set<std::string> used_;
  std::string base_dir_;
};

}  // namespace

util::Result<MigrationPlan> PlanMigration(const std::string& opendkim_conf) {
  MigrationPlan plan;
  plan.source = opendkim_conf;
  Planner planner(plan);
  RETURN_IF_ERROR(planner.ReadConf(opendkim_conf, 0));
  planner.Plan();
  return plan;
}

}  // namespace dkimrotor::migrate
