#include "bench/job_load.h"

namespace varan::bench {

int64_t CountJobs(varan::client::CoreClient* client,
                  const std::vector<varan::v1::JobState>& states,
                  int64_t stop_after) {
  varan::v1::ListJobsRequest req;
  req.set_limit(1000);
  for (auto s : states) req.add_states(s);
  int64_t count = 0;
  while (true) {
    auto page = client->ListJobs(req);
    if (!page.ok()) return -1;
    count += page->jobs_size();
    if (page->next_page_token().empty()) return count;
    if (stop_after >= 0 && count >= stop_after) return count;
    req.set_page_token(page->next_page_token());
  }
}

std::unique_ptr<SimPeriphery> StartSimPeriphery(const std::string& name) {
  auto sim = std::make_unique<SimPeriphery>();
  sim->name = name;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("[::1]:0", grpc::InsecureServerCredentials(),
                           &sim->port);
  builder.RegisterService(&sim->agent);
  sim->server = builder.BuildAndStart();
  if (sim->server == nullptr || sim->port == 0) return nullptr;
  return sim;
}

}  // namespace varan::bench
