// Placement options shared by plan, run, eval, bench, perplexity and serve: --vram-budget,
// --gpu-layers, --override-tensor, --cpu-moe, --n-cpu-moe.
#pragma once

#include <vector>

#include "cli.h"
#include "sched/plan.h"

namespace straw::cli {

std::vector<Option> placement_options();
// Budget (default: 0 = CPU only when no GPU is usable), gpu_layers ("all" = n_layer + 1 is
// resolved by the planner's caller) and overrides from the command line.
sched::PlanOptions plan_options_from(const Args& a);
// --cpu-moe and --n-cpu-moe N (llama.cpp's meaning), for commands with placement flags of their
// own (bench): the number of leading layers whose experts stay on the CPU (INT_MAX: all).
std::vector<Option> moe_options();
int n_cpu_moe_from(const Args& a);
sched::KvType parse_kv_type(const std::string& s);

}  // namespace straw::cli
