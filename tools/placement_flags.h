// Placement options shared by plan, run, eval and bench: --vram-budget, --gpu-layers,
// --override-tensor.
#pragma once

#include <vector>

#include "cli.h"
#include "sched/plan.h"

namespace straw::cli {

std::vector<Option> placement_options();
// Budget (default: 0 = CPU only when no GPU is usable), gpu_layers ("all" = n_layer + 1 is
// resolved by the planner's caller) and overrides from the command line.
sched::PlanOptions plan_options_from(const Args& a);
sched::KvType parse_kv_type(const std::string& s);

}  // namespace straw::cli
