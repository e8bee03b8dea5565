// A c-ares channel (owned, freed with ares_destroy) that sends raw DNS queries to a fixed set of
// servers, and an event loop that runs several channels at once up to a deadline.
// Owns its channel; a PendingQuery is owned by the caller and must outlive RunQueries().
// Not thread-safe: c-ares 1.18 channels are not, so each thread that resolves owns its channels.
#pragma once

#include <ares.h>
#include <netinet/in.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "util/openssl_ptr.h"
#include "util/result.h"
#include "util/server_address.h"

namespace dkimrotor::keystore::internal {

using AresChannelPtr = std::unique_ptr<ares_channeldata, util::CDeleter<&ares_destroy>>;

// One query in flight; filled in by the channel's callback.
struct PendingQuery {
  bool done = false;
  int status = ARES_SUCCESS;  // ARES_SUCCESS with `response` set, or the c-ares error
  std::string response;       // the raw DNS message (any RCODE c-ares passes on)
};

class AresChannel {
 public:
  struct Options {
    std::vector<util::ServerAddress> servers;  // empty: the system's resolv.conf
    std::chrono::milliseconds try_timeout{1000};
    int tries = 2;
  };

  // Initializes the c-ares library on first use (once per process).
  static util::Result<std::unique_ptr<AresChannel>> Create(const Options& options);

  // Starts a query for `name`/`type` (class IN) with EDNS; `recursion_desired` sets RD.
  // `query` receives the answer during RunQueries(). A malformed name fails at once.
  util::Status Send(std::string_view name, int type, bool recursion_desired, PendingQuery* query);

  ares_channel get() const { return channel_.get(); }

 private:
  explicit AresChannel(AresChannelPtr channel) : channel_(std::move(channel)) {}
  AresChannelPtr channel_;
};

// Runs the channels' event loops until every query in `queries` is done or `deadline` passes;
// then cancels what is left on every channel, so each of those gets ARES_ECANCELLED.
void RunQueries(std::span<AresChannel* const> channels, std::span<PendingQuery* const> queries,
                std::chrono::steady_clock::time_point deadline);

}  // namespace dkimrotor::keystore::internal
