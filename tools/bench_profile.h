// straw bench --profile: where one token's time goes, per CPU op (ModelOptions::profile_ops).
#pragma once

#include <string>
#include <vector>

#include "bench_report.h"

namespace straw::cli::bench {

// After the results table: one table per test, per token (pp: per prompt token): calls, time,
// share of the step, and for the ops that read weights the GB/s they read at.
void print_profile_md(const std::vector<Row>& rows);
// The "profile" value of a row in the JSON report: a list of
// {"op", "type", "calls", "seconds", "bytes"} summed over the timed repetitions.
std::string profile_json(const TestResult& r);

}  // namespace straw::cli::bench
