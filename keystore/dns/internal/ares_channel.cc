#include "keystore/dns/internal/ares_channel.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <poll.h>

#include <algorithm>
#include <mutex>

namespace dkimrotor::keystore::internal {
namespace {

using util::ErrorCode;

// Large enough for a 4096-bit RSA key record over UDP, small enough to avoid fragmentation
// (the DNS flag day 2020 value). Larger answers come back truncated and c-ares retries on TCP.
constexpr int kEdnsPayload = 1232;

util::Status InitLibrary() {
  static std::once_flag once;
  static int status = ARES_SUCCESS;
  std::call_once(once, [] { status = ares_library_init(ARES_LIB_INIT_ALL); });
  if (status != ARES_SUCCESS)
    return util::Err(ErrorCode::kDns,
                     std::string("c-ares library init failed: ") + ares_strerror(status));
  return util::Ok();
}

void OnAnswer(void* arg, int status, int /*timeouts*/, unsigned char* abuf, int alen) {
  auto* query = static_cast<PendingQuery*>(arg);
  query->done = true;
  query->status = status;
  if (status == ARES_SUCCESS && abuf != nullptr && alen > 0)
    query->response.assign(reinterpret_cast<const char*>(abuf), static_cast<size_t>(alen));
}

}  // namespace

namespace {

util::Result<AresChannelPtr> InitChannel(const AresChannel::Options& options, bool check_rcode) {
  ares_options opts{};
  int mask = ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_EDNSPSZ;
  // No search list (ares_send never applies one, but be explicit), EDNS with a retry without it
  // on FORMERR from old servers.
  opts.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_EDNS;
  if (!check_rcode) opts.flags |= ARES_FLAG_NOCHECKRESP;
  opts.timeout = static_cast<int>(std::max<long long>(1, options.try_timeout.count()));
  opts.tries = std::max(1, options.tries);
  opts.ednspsz = kEdnsPayload;
  ares_channel raw = nullptr;
  int status = ares_init_options(&raw, &opts, mask);
  AresChannelPtr channel(raw);
  if (status != ARES_SUCCESS)
    return util::Err(ErrorCode::kDns,
                     std::string("c-ares channel init failed: ") + ares_strerror(status));
  if (options.servers.empty()) return channel;
  std::vector<ares_addr_port_node> nodes(options.servers.size());
  for (size_t i = 0; i < nodes.size(); ++i) {
    const util::ServerAddress& s = options.servers[i];
    nodes[i].next = i + 1 < nodes.size() ? &nodes[i + 1] : nullptr;
    nodes[i].family = s.family;
    // s.ip is util::ServerAddress's canonical text, so this only converts it to bytes.
    void* addr = s.family == AF_INET6 ? static_cast<void*>(&nodes[i].addr.addr6)
                                      : static_cast<void*>(&nodes[i].addr.addr4);
    if (inet_pton(s.family, s.ip.c_str(), addr) != 1)
      return util::Err(ErrorCode::kInternal, "DNS server " + s.ToString() + " is no IP address");
    nodes[i].udp_port = s.port;
    nodes[i].tcp_port = s.port;
  }
  status = ares_set_servers_ports(channel.get(), nodes.data());
  if (status != ARES_SUCCESS)
    return util::Err(ErrorCode::kDns,
                     std::string("c-ares could not use the DNS servers: ") + ares_strerror(status));
  return channel;
}

size_t ServerCount(ares_channel channel) {
  ares_addr_port_node* servers = nullptr;
  if (ares_get_servers_ports(channel, &servers) != ARES_SUCCESS) return 0;
  size_t n = 0;
  for (auto* s = servers; s != nullptr; s = s->next) ++n;
  ares_free_data(servers);
  return n;
}

}  // namespace

util::Result<std::unique_ptr<AresChannel>> AresChannel::Create(const Options& options) {
  RETURN_IF_ERROR(InitLibrary());
  // With several servers c-ares moves on to the next after SERVFAIL, REFUSED or NOTIMP. With a
  // single one there is nowhere to move, and c-ares 1.18 then reports the query as ECONNREFUSED:
  // such a channel takes the answer as it is, so the caller can name its RCODE.
  ASSIGN_OR_RETURN(AresChannelPtr channel, InitChannel(options, options.servers.size() != 1));
  if (options.servers.empty() && ServerCount(channel.get()) == 1) {
    ASSIGN_OR_RETURN(channel, InitChannel(options, false));
  }
  return std::unique_ptr<AresChannel>(new AresChannel(std::move(channel)));
}

util::Status AresChannel::Send(std::string_view name, int type, bool recursion_desired,
                               PendingQuery* query) {
  *query = PendingQuery{};
  unsigned char* buf = nullptr;
  int len = 0;
  std::string owned(name);
  int status = ares_create_query(owned.c_str(), ns_c_in, type, 0, recursion_desired ? 1 : 0, &buf,
                                 &len, kEdnsPayload);
  if (status != ARES_SUCCESS) {
    query->done = true;
    query->status = status;
    return util::Err(ErrorCode::kInvalidArgument,
                     "cannot build a DNS query for '" + owned + "': " + ares_strerror(status));
  }
  ares_send(channel_.get(), buf, len, &OnAnswer, query);
  ares_free_string(buf);
  return util::Ok();
}

void RunQueries(std::span<AresChannel* const> channels, std::span<PendingQuery* const> queries,
                std::chrono::steady_clock::time_point deadline) {
  using std::chrono::steady_clock;
  auto all_done = [&] {
    return std::all_of(queries.begin(), queries.end(),
                       [](const PendingQuery* q) { return q->done; });
  };
  std::vector<pollfd> fds;
  std::vector<ares_channel> owners;
  while (!all_done()) {
    auto now = steady_clock::now();
    if (now >= deadline) break;
    fds.clear();
    owners.clear();
    auto wait = std::chrono::duration_cast<std::chrono::microseconds>(deadline - now);
    for (AresChannel* ch : channels) {
      ares_socket_t socks[ARES_GETSOCK_MAXNUM];
      int bits = ares_getsock(ch->get(), socks, ARES_GETSOCK_MAXNUM);
      for (int i = 0; i < ARES_GETSOCK_MAXNUM; ++i) {
        short events = 0;
        if (ARES_GETSOCK_READABLE(bits, i)) events |= POLLIN;
        if (ARES_GETSOCK_WRITABLE(bits, i)) events |= POLLOUT;
        if (events == 0) continue;
        fds.push_back(pollfd{socks[i], events, 0});
        owners.push_back(ch->get());
      }
      timeval max_tv{static_cast<time_t>(wait.count() / 1000000),
                     static_cast<suseconds_t>(wait.count() % 1000000)};
      timeval tv{};
      timeval* next = ares_timeout(ch->get(), &max_tv, &tv);
      if (next != nullptr)
        wait = std::min(
            wait, std::chrono::seconds(next->tv_sec) + std::chrono::microseconds(next->tv_usec));
    }
    // Round up so a sub-millisecond wait does not spin.
    int wait_ms = static_cast<int>((wait.count() + 999) / 1000);
    int ready = poll(fds.data(), fds.size(), wait_ms);
    if (ready > 0) {
      for (size_t i = 0; i < fds.size(); ++i) {
        if (fds[i].revents == 0) continue;
        bool readable = (fds[i].revents & (POLLIN | POLLERR | POLLHUP)) != 0;
        bool writable = (fds[i].revents & POLLOUT) != 0;
        ares_process_fd(owners[i], readable ? fds[i].fd : ARES_SOCKET_BAD,
                        writable ? fds[i].fd : ARES_SOCKET_BAD);
      }
    }
    for (AresChannel* ch : channels) ares_process_fd(ch->get(), ARES_SOCKET_BAD, ARES_SOCKET_BAD);
  }
  if (!all_done())
    for (AresChannel* ch : channels) ares_cancel(ch->get());
}

}  // namespace dkimrotor::keystore::internal
