#include "bench_profile.h"

#include <cstdio>

#include "util/json.h"

namespace straw::cli::bench {

void print_profile_md(const std::vector<Row>& rows) {
  for (const Row& w : rows) {
    const TestResult& r = w.r;
    if (r.profile.empty()) continue;
    const int n_tokens = r.spec.n_prompt > 0 ? r.spec.n_prompt : r.spec.n_gen;
    const double per = 1.0 / (double(n_tokens) * double(r.samples_ns.size()));
    const double step_us = r.avg_ns / n_tokens / 1e3;  // one token's wall time
    double ops_us = 0;
    for (const OpProfile& p : r.profile) ops_us += p.seconds * 1e6 * per;
    std::printf("\nprofile: %s, %d threads (per token; %zu repetitions; CPU ops only)\n\n",
                r.spec.name().c_str(), r.spec.threads, r.samples_ns.size());
    std::printf("| op              | type    | calls/token |  us/token | share |  GB/s |\n");
    std::printf("| --------------- | ------- | ----------: | --------: | ----: | ----: |\n");
    for (const OpProfile& p : r.profile) {
      const double us = p.seconds * 1e6 * per;
      char gbs[32] = "";
      if (p.bytes > 0 && p.seconds > 0)
        std::snprintf(gbs, sizeof gbs, "%.1f", double(p.bytes) / p.seconds / 1e9);
      std::printf("| %-15s | %-7s | %11.1f | %9.1f | %4.1f%% | %5s |\n", p.op.c_str(),
                  p.type.c_str(), double(p.calls) * per, us, 100.0 * us / step_us, gbs);
    }
    // What the ops do not cover: the forward pass's own host work (scheduling, KV bookkeeping),
    // session calls, and the benchmark loop.
    std::printf("| (outside ops)   |         |             | %9.1f | %4.1f%% |       |\n",
                step_us - ops_us, 100.0 * (step_us - ops_us) / step_us);
    std::printf("| (token)         |         |             | %9.1f |  100%% |       |\n", step_us);
  }
}

std::string profile_json(const TestResult& r) {
  std::string out = "[";
  for (size_t i = 0; i < r.profile.size(); ++i) {
    const OpProfile& p = r.profile[i];
    char nums[160];
    std::snprintf(nums, sizeof nums, ", \"calls\": %lld, \"seconds\": %.9f, \"bytes\": %llu}",
                  static_cast<long long>(p.calls), p.seconds,
                  static_cast<unsigned long long>(p.bytes));
    out += (i ? ", " : "") + std::string("{\"op\": ") + json_string(p.op) +
           ", \"type\": " + json_string(p.type) + nums;
  }
  return out + "]";
}

}  // namespace straw::cli::bench
