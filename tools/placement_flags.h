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
// --kv-type (both caches), --cache-type-k/-ctk and --cache-type-v/-ctv (one each, over --kv-type).
void set_plan_kv_types(const Args& a, sched::PlanOptions& po);
// straw plan's --kv-type A,B,..: the types to compare (one entry without a comma).
std::vector<sched::KvType> plan_kv_type_list(const Args& a);

}  // namespace straw::cli
