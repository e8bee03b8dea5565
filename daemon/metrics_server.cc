#include "daemon/metrics_server.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <string_view>

#include "metrics/text_format.h"

namespace dkimrotor::daemon {
namespace {

MHD_Result Reply(MHD_Connection* connection, unsigned status, std::string_view body, const char* type) {
  MHD_Response* response =
      MHD_create_response_from_buffer(body.size(), const_cast<char*>(body.data()), MHD_RESPMEM_MUST_COPY);
  if (response == nullptr) return MHD_NO;
  MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  const MHD_Result r = MHD_queue_response(connection, status, response);
  MHD_destroy_response(response);
  return r;
}

// libmicrohttpd's access handler: a C callback, so nothing may escape it.
MHD_Result Handle(void* cls, MHD_Connection* connection, const char* url, const char* method,
                         const char* /*version*/, const char* /*upload_data*/, size_t* upload_data_size,
                         void** /*con_cls*/) noexcept {
  auto* render = static_cast<const MetricsServer::Render*>(cls);
  try {
    if (*upload_data_size != 0) {  // a body nobody asked for: drop it
      *upload_data_size = 0;
      return MHD_YES;
    }
    if (std::strcmp(url, "/metrics") != 0) return Reply(connection, MHD_HTTP_NOT_FOUND, "not found: try /metrics\n", "text/plain");
    if (std::strcmp(method, "GET") != 0 && std::strcmp(method, "HEAD") != 0)
      return Reply(connection, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET\n", "text/plain");
    return Reply(connection, MHD_HTTP_OK, (*render)(), metrics::kContentType);
  } catch (...) {
    return Reply(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal error\n", "text/plain");
  }
}

}  // namespace

util::Result<std::unique_ptr<MetricsServer>> MetricsServer::Start(const util::ServerAddress& listen, Render render,
                                                                  std::shared_ptr<spdlog::logger> log) {
  std::unique_ptr<MetricsServer> server(new MetricsServer(std::move(render), std::move(log)));
  sockaddr_storage address{};
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
  if (listen.family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&address);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(listen.port);
    ::inet_pton(AF_INET6, listen.ip.c_str(), &a->sin6_addr);
    flags |= MHD_USE_IPv6;
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&address);
    a->sin_family = AF_INET;
    a->sin_port = htons(listen.port);
    ::inet_pton(AF_INET, listen.ip.c_str(), &a->sin_addr);
  }
  server->mhd_ = MHD_start_daemon(flags, 0, nullptr, nullptr, &Handle, const_cast<Render*>(&server->render_),
                                  MHD_OPTION_SOCK_ADDR, reinterpret_cast<sockaddr*>(&address),
                                  MHD_OPTION_THREAD_POOL_SIZE, 2u,
                                  MHD_OPTION_CONNECTION_TIMEOUT, 10u,
                                  MHD_OPTION_CONNECTION_LIMIT, 64u,
                                  MHD_OPTION_END);
  if (server->mhd_ == nullptr)
    return util::Err(util::ErrorCode::kIo, "cannot serve metrics on " + listen.ToString() +
                                               ": is the address local and the port free? (metrics.listen)");
  const MHD_DaemonInfo* info = MHD_get_daemon_info(server->mhd_, MHD_DAEMON_INFO_BIND_PORT);
  server->port_ = info ? info->port : listen.port;
  return server;
}

MetricsServer::~MetricsServer() { Stop(); }

void MetricsServer::Stop() {
  if (mhd_ == nullptr) return;
  MHD_stop_daemon(mhd_);
  mhd_ = nullptr;
}

}  // namespace dkimrotor::daemon
