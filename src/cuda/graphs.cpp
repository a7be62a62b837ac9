// Forward steps as CUDA Graphs: op-by-op, capture, or verification against a recording.
//
// begin_forward uploads the step's position and token ids to device memory (the kernels of a step
// read them there) and picks a mode:
//  - Eager: ops are launched as they come (graphs off, more than kMaxGraphTokens tokens, or the
//    first step of a shape, which also uploads any vectors used for the first time);
//  - Capture: ops are launched into a stream capture (relaxed mode: uploads and allocations on
//    other streams stay legal) and recorded; end_forward instantiates and launches the graph;
//  - Verify: a graph of this shape exists; each op's record is compared with the graphs'
//    recordings and nothing is launched; end_forward launches the graph that matched every op.
//    On the first op that matches no recording the step turns into a capture: the ops so far are
//    issued into a new capture (they had not run) and the step continues there.
// A step that needs something a graph cannot hold (a copy to the host, a new buffer, a workspace
// that grows) is flushed: the ops recorded so far are launched op by op and the rest follow.
#include <algorithm>

#include "cuda/backend_impl.h"
#include "util/str.h"

namespace straw::cuda {

namespace {
constexpr size_t kMaxGraphs = 16;  // least recently used graphs are dropped beyond this
}

void CudaBackend::Impl::destroy_graphs() noexcept {
  for (RecordedGraph& g : graphs)
    if (g.exec) cudaGraphExecDestroy(g.exec);
  graphs.clear();
  // A step being verified now matches no recording: its next op turns it into a capture.
  candidates.clear();
}

void CudaBackend::Impl::abandon_step() noexcept {
  if (mode == Mode::Capture) {
    cudaGraph_t g = nullptr;
    cudaStreamEndCapture(stream, &g);
    if (g) cudaGraphDestroy(g);
    cudaGetLastError();
  }
  in_step = false;
  mode = Mode::Eager;
  recs.clear();
  candidates.clear();
  invalidate_caches();
}

void CudaBackend::Impl::flush_to_eager() {
  if (!in_step || mode == Mode::Eager) return;
  if (mode == Mode::Capture) {
    cudaGraph_t g = nullptr;
    cudaStreamEndCapture(stream, &g);  // the captured launches never ran: discard them
    if (g) cudaGraphDestroy(g);
    cudaGetLastError();
  }
  mode = Mode::Eager;
  candidates.clear();
  ++stats.eager_steps;
  invalidate_caches();
  std::vector<OpRec> pending;
  pending.swap(recs);
  for (const OpRec& r : pending) issue(r);
}

void CudaBackend::Impl::submit(const OpRec& r) {
  if (!in_step || mode == Mode::Eager) return issue(r);
  recs.push_back(r);
  if (mode == Mode::Capture) return issue(r);
  const size_t i = recs.size() - 1;
  std::erase_if(candidates,
                [&](size_t c) { return graphs[c].ops.size() <= i || !(graphs[c].ops[i] == r); });
  if (!candidates.empty()) return;
  // No recording matches this step: capture it instead, starting with the ops so far.
  ++stats.graph_mismatches;
  STRAW_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed));
  mode = Mode::Capture;
  invalidate_caches();
  for (const OpRec& op : recs) issue(op);
}

bool CudaBackend::begin_forward(std::span<const int32_t> tokens, int64_t pos0, int n_logit_rows) {
  Impl& s = *impl_;
  STRAW_CUDA_CHECK(cudaSetDevice(s.options.device));
  if (s.in_step) s.abandon_step();  // the previous step threw before end_forward
  const int T = int(tokens.size());
  if (pos0 < 0 || pos0 + T > int64_t(INT32_MAX))
    fail("CUDA backend: position ", pos0, " is outside 0..2^31");
  // Step parameters: [0] = pos0, [1..T] = token ids, through pinned memory to the device.
  const size_t bytes = (size_t(T) + 1) * sizeof(int32_t);
  // Room for 1024 tokens from the start: growing the buffer later would drop every graph.
  s.ensure(s.step, std::max<size_t>(bytes, 1025 * sizeof(int32_t)), "step parameters");
  STRAW_CUDA_CHECK(cudaEventSynchronize(s.step_uploaded));  // pinned_step is free again
  s.grow_pinned(s.pinned_step, s.pinned_step_bytes, bytes);
  auto* params = static_cast<int32_t*>(s.pinned_step);
  params[0] = int32_t(pos0);
  std::copy(tokens.begin(), tokens.end(), params + 1);
  STRAW_CUDA_CHECK(
      cudaMemcpyAsync(s.step.ptr, s.pinned_step, bytes, cudaMemcpyHostToDevice, s.stream));
  STRAW_CUDA_CHECK(cudaEventRecord(s.step_uploaded, s.stream));

  s.in_step = true;
  s.step_pos0 = pos0;
  s.step_tokens.assign(tokens.begin(), tokens.end());
  s.shape = {T, n_logit_rows};
  s.recs.clear();
  s.candidates.clear();
  s.invalidate_caches();
  s.mode = Mode::Eager;
  if (!s.options.graphs || T > kMaxGraphTokens) {
    ++s.stats.eager_steps;
    return false;
  }
  for (size_t i = 0; i < s.graphs.size(); ++i)
    if (s.graphs[i].shape == s.shape) s.candidates.push_back(i);
  if (!s.candidates.empty()) {
    s.mode = Mode::Verify;
    return false;
  }
  auto seen =
      std::find_if(s.seen.begin(), s.seen.end(), [&](const auto& e) { return e.first == s.shape; });
  if (seen == s.seen.end()) {
    s.seen.push_back({s.shape, 1});
    ++s.stats.eager_steps;
    return false;
  }
  STRAW_CUDA_CHECK(cudaStreamBeginCapture(s.stream, cudaStreamCaptureModeRelaxed));
  s.mode = Mode::Capture;
  return false;
}

void CudaBackend::end_forward() {
  Impl& s = *impl_;
  if (!s.in_step) return;
  STRAW_CUDA_CHECK(cudaSetDevice(s.options.device));
  if (s.mode == Mode::Capture) {
    cudaGraph_t g = nullptr;
    cudaGraphExec_t exec = nullptr;
    cudaError_t err = cudaStreamEndCapture(s.stream, &g);
    if (err == cudaSuccess) err = cudaGraphInstantiate(&exec, g, 0);
    if (g) cudaGraphDestroy(g);
    if (err != cudaSuccess) {
      // The capture failed (a call the driver refuses inside a capture): run the step op by op
      // and stop using graphs on this backend.
      cudaGetLastError();
      s.options.graphs = false;
      s.mode = Mode::Eager;
      ++s.stats.eager_steps;
      s.invalidate_caches();
      for (const OpRec& r : s.recs) s.issue(r);
    } else {
      if (s.graphs.size() >= kMaxGraphs) {
        auto lru =
            std::min_element(s.graphs.begin(), s.graphs.end(),
                             [](const auto& a, const auto& b) { return a.last_use < b.last_use; });
        cudaGraphExecDestroy(lru->exec);
        s.graphs.erase(lru);
      }
      s.graphs.push_back({s.shape, std::move(s.recs), exec, ++s.use_clock});
      ++s.stats.graph_captures;
      STRAW_CUDA_CHECK(cudaGraphLaunch(exec, s.stream));
    }
  } else if (s.mode == Mode::Verify) {
    auto it = std::find_if(s.candidates.begin(), s.candidates.end(),
                           [&](size_t c) { return s.graphs[c].ops.size() == s.recs.size(); });
    if (it == s.candidates.end()) {
      ++s.stats.graph_mismatches;
      s.flush_to_eager();  // the step was a prefix of a recording: run it op by op
    } else {
      RecordedGraph& g = s.graphs[*it];
      g.last_use = ++s.use_clock;
      ++s.stats.graph_replays;
      STRAW_CUDA_CHECK(cudaGraphLaunch(g.exec, s.stream));
    }
  }
  s.in_step = false;
  s.mode = Mode::Eager;
  s.recs.clear();
  s.candidates.clear();
  s.invalidate_caches();
  STRAW_CUDA_CHECK(cudaEventRecord(s.rows_consumed, s.stream));
}

}  // namespace straw::cuda
