// Speculative decoding with Qwen3.5's MTP / NextN block (SpecMethod::Mtp) on synthesized files:
// the block's forward pass against a direct float evaluation of its formula, the hidden state the
// main model hands it, greedy output equal to plain decoding (dense and MoE), rollback after
// rejections, and the refusal of files without the block. Random weights: acceptance means nothing.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <numeric>

#include "api/model_impl.h"
#include "engine.h"
#include "gguf/gguf.h"
#include "model/presets.h"
#include "model/synth.h"
#include "quant/f16.h"
#include "straw/straw.h"
#include "test_util.h"

namespace {

using namespace straw;
using model::Arch;
using model::FileType;
using model::ModelShape;

// 4 layers (3 linear, 1 gated attention) + MTP, 256 wide, 2 heads of 128, vocabulary 600.
ModelShape shape(bool mtp, bool moe = false, bool tied = false) {
  ModelShape s =
      model::custom_shape(moe ? Arch::Qwen35Moe : Arch::Qwen35, 4, 256, 512, 2, 1, 128, 600, tied);
  if (moe) {
    s.n_expert = 4;
    s.n_expert_used = 2;
    s.n_ff_exp = 128;
    s.n_ff_shexp = 128;
  }
  s.n_mtp = mtp ? 1 : 0;
  return s;
}

struct File {
  std::filesystem::path path;
  explicit File(const std::string& name, const ModelShape& s) : path(test::temp_path(name)) {
    model::SynthOptions o;
    o.shape = s;
    o.type = FileType::F16;
    o.seed = 5;
    o.threads = 2;
    model::synthesize(path.string(), o);
  }
  ~File() { std::filesystem::remove(path); }
};

std::unique_ptr<Model> load(const File& f) {
  ModelOptions o;
  o.path = f.path.string();
  o.threads = 2;
  o.ctx = 128;
  o.device = DeviceChoice::Cpu;
  return Model::load(o);
}

using straw::test::nrmse;

std::vector<int32_t> generate_greedy(const std::vector<int32_t>& prompt, int n, Speculator* spec,
                                     Session& s, GenerateResult* out = nullptr) {
  GenerateOptions g;
  g.n_predict = n;
  g.sampling.temperature = 0.0f;
  g.stop_at_eog = false;
  g.speculator = spec;
  const GenerateResult r = generate(s, prompt, g, nullptr);
  if (out) *out = r;
  return r.tokens;
}

// --- the block's math -------------------------------------------------------------------------

// A tensor of the file as floats (F32 or F16).
std::vector<float> floats(const gguf::Reader& r, const std::string& name) {
  const gguf::TensorInfo& t = r.tensor(name);
  int64_t n = 1;
  for (int d = 0; d < t.n_dims; ++d) n *= t.ne[d];
  std::vector<float> out(static_cast<size_t>(n));
  if (t.type == quant::Type::F32) {
    std::memcpy(out.data(), t.data, out.size() * sizeof(float));
  } else {
    EXPECT_EQ(t.type, quant::Type::F16) << name;
    std::vector<uint16_t> h(out.size());
    std::memcpy(h.data(), t.data, h.size() * sizeof(uint16_t));
    for (size_t i = 0; i < h.size(); ++i) out[i] = quant::fp16_to_fp32(h[i]);
  }
  return out;
}

std::vector<float> rmsnorm(std::span<const float> x, const std::vector<float>& w, float eps) {
  double ss = 0;
  for (float v : x) ss += double(v) * v;
  const float s = float(1.0 / std::sqrt(ss / double(x.size()) + eps));
  std::vector<float> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * s * w[i];
  return y;
}

// y = W x for W of n_out rows of x.size() floats.
std::vector<float> matvec(const std::vector<float>& w, std::span<const float> x) {
  const size_t n_in = x.size(), n_out = w.size() / n_in;
  std::vector<float> y(n_out);
  for (size_t r = 0; r < n_out; ++r) {
    double acc = 0;
    for (size_t i = 0; i < n_in; ++i) acc += double(w[r * n_in + i]) * x[i];
    y[r] = float(acc);
  }
  return y;
}

// The MTP block at position 0 (one key: attention returns v, so RoPE and the q/k norms drop out),
// written from the formula: the logits for the token after `token`.
std::vector<float> reference_mtp(const gguf::Reader& r, const model::HParams& hp,
                                 std::span<const float> h, int32_t token) {
  const int64_t E = hp.n_embd, D = hp.head_dim;
  const std::string p = "blk." + std::to_string(hp.n_layer) + ".";
  const float eps = hp.rms_eps;
  const std::vector<float> embd = floats(r, "token_embd.weight");
  const std::span<const float> e(embd.data() + size_t(token) * E, size_t(E));
  // x = eh_proj [enorm(e) | hnorm(h)]
  std::vector<float> cat = rmsnorm(e, floats(r, p + "nextn.enorm.weight"), eps);
  const std::vector<float> hn = rmsnorm(h, floats(r, p + "nextn.hnorm.weight"), eps);
  cat.insert(cat.end(), hn.begin(), hn.end());
  std::vector<float> x = matvec(floats(r, p + "nextn.eh_proj.weight"), cat);
  // gated attention over the single key: o_h = v_{kv(h)} * sigmoid(gate_h)
  const std::vector<float> n = rmsnorm(x, floats(r, p + "attn_norm.weight"), eps);
  const std::vector<float> qg = matvec(floats(r, p + "attn_q.weight"), n);
  const std::vector<float> v = matvec(floats(r, p + "attn_v.weight"), n);
  std::vector<float> o(size_t(hp.n_head * D));
  const int group = hp.n_head / hp.n_head_kv;
  for (int hd = 0; hd < hp.n_head; ++hd)
    for (int64_t d = 0; d < D; ++d) {
      const float gate = qg[size_t(hd * 2 * D + D + d)];
      o[size_t(hd * D + d)] = v[size_t((hd / group) * D + d)] / (1.0f + std::exp(-gate));
    }
  const std::vector<float> attn = matvec(floats(r, p + "attn_output.weight"), o);
  for (int64_t i = 0; i < E; ++i) x[size_t(i)] += attn[size_t(i)];
  // FFN
  const std::vector<float> n2 = rmsnorm(x, floats(r, p + "post_attention_norm.weight"), eps);
  std::vector<float> g = matvec(floats(r, p + "ffn_gate.weight"), n2);
  const std::vector<float> u = matvec(floats(r, p + "ffn_up.weight"), n2);
  for (size_t i = 0; i < g.size(); ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
  const std::vector<float> down = matvec(floats(r, p + "ffn_down.weight"), g);
  for (int64_t i = 0; i < E; ++i) x[size_t(i)] += down[size_t(i)];
  // logits = head · shared_head_norm(x)
  const std::vector<float> out = rmsnorm(x, floats(r, p + "nextn.shared_head_norm.weight"), eps);
  return matvec(r.find_tensor("output.weight") ? floats(r, "output.weight") : embd, out);
}

TEST(Mtp, BlockMatchesItsFormula) {
  for (bool tied : {false, true}) {
    SCOPED_TRACE(tied ? "tied" : "untied");
    const File f("mtp-math.gguf", shape(true, false, tied));
    auto m = load(f);
    Model::Impl& mi = m->impl();
    mi.bind_mtp();
    const model::HParams& hp = mi.hp;
    // A hidden state of the right scale: the main model's after a short prompt.
    Session s(*m);
    SessionInternals::keep_hidden(s);
    const std::vector<int32_t> prompt = {3, 141, 59, 265};
    s.eval(prompt);
    const SessionInternals::Hidden h = SessionInternals::hidden(s);
    ASSERT_EQ(h.pos0, 0);
    ASSERT_EQ(h.n, 4);
    const std::span<const float> h_last(h.rows + 3 * hp.n_embd, size_t(hp.n_embd));
    // The kept hidden state is the one after output_norm: the LM head applied to it gives the
    // main model's logits.
    const auto reader = gguf::Reader::open(f.path.string());
    const std::vector<float> head = floats(*reader, tied ? "token_embd.weight" : "output.weight");
    EXPECT_LT(nrmse(matvec(head, h_last), s.logits()), 1e-4);

    for (int32_t token : {7, 300}) {
      model::KvCache kv(hp, 16, ops::KvType::F32, ops::KvType::F32, *mi.devices.output);
      std::vector<float> logits(size_t(hp.n_vocab)), hidden_out(size_t(hp.n_embd));
      model::MtpStep step;
      const int32_t t[1] = {token};
      step.tokens = t;
      step.hidden = h_last.data();
      step.kv = &kv;
      step.logits = logits.data();
      step.hidden_out = hidden_out.data();
      mi.transformer().forward_mtp(step);
      const std::vector<float> want = reference_mtp(*reader, hp, h_last, token);
      EXPECT_LT(nrmse(logits, want), 1e-4) << "token " << token;
      // hidden_out is what the head reads
      EXPECT_LT(nrmse(matvec(head, hidden_out), want), 1e-4);
    }
  }
}

// --- speculation ------------------------------------------------------------------------------

SpeculativeOptions mtp_options(int k) {
  SpeculativeOptions o;
  o.method = SpecMethod::Mtp;
  o.draft_max = k;
  o.draft_p_min = 0.0f;  // random weights: every proposal is unsure
  o.adaptive = false;
  return o;
}

void check_greedy_equal(bool moe) {
  const File f(moe ? "mtp-moe.gguf" : "mtp-dense.gguf", shape(true, moe));
  auto m = load(f);
  EXPECT_EQ(m->info().n_mtp, 1);
  const std::vector<int32_t> prompt = {1, 17, 230, 5, 17, 230, 5, 99, 412};
  Session plain_s(*m);
  const std::vector<int32_t> plain = generate_greedy(prompt, 40, nullptr, plain_s);
  ASSERT_EQ(plain.size(), 40u);
  for (int k : {1, 3}) {
    SCOPED_TRACE(k);
    Speculator spec(*m, mtp_options(k));
    Session s(*m);
    GenerateResult r;
    EXPECT_EQ(generate_greedy(prompt, 40, &spec, s, &r), plain);
    EXPECT_GT(r.speculation.steps, 0);
    EXPECT_GT(r.speculation.proposed, r.speculation.steps * (k - 1));
    // The cache holds the prompt and the generated tokens, none of the rejected proposals.
    std::vector<int32_t> expect = prompt;
    expect.insert(expect.end(), plain.begin(), plain.end());
    EXPECT_EQ(std::vector<int32_t>(s.tokens().begin(), s.tokens().end()), expect);
    // A second turn in the same session (the MTP cache follows on) stays equal too.
    const std::vector<int32_t> more = {8, 9};
    std::vector<int32_t> seq2 = expect;
    seq2.insert(seq2.end(), more.begin(), more.end());
    Session plain2(*m);
    plain2.eval(std::span(seq2).first(seq2.size() - 2));
    EXPECT_EQ(generate_greedy(more, 12, &spec, s), generate_greedy(more, 12, nullptr, plain2));
  }
}

TEST(Mtp, GreedyOutputEqualsPlainDecoding) {
  check_greedy_equal(false);
}

TEST(Mtp, GreedyOutputEqualsPlainDecodingMoe) {
  check_greedy_equal(true);
}

TEST(Mtp, RollbackGivesTheProposalsOfAFreshEvaluation) {
  // After a run with rejected proposals (random weights reject nearly all), the target's next
  // logits and the MTP block's next proposals equal those of a session and a speculator that
  // evaluated the final sequence from scratch.
  const File f("mtp-rollback.gguf", shape(true));
  auto m = load(f);
  const std::vector<int32_t> prompt = {1, 40, 41, 42, 43};
  Speculator spec(*m, mtp_options(3));
  Session s(*m);
  GenerateResult r;
  const std::vector<int32_t> out = generate_greedy(prompt, 24, &spec, s, &r);
  ASSERT_GT(r.speculation.checked, r.speculation.accepted);  // there were rejections
  std::vector<int32_t> seq = prompt;
  seq.insert(seq.end(), out.begin(), out.end());
  ASSERT_EQ(std::vector<int32_t>(s.tokens().begin(), s.tokens().end()), seq);
  Session fresh(*m);
  Speculator fresh_spec(*m, mtp_options(3));
  fresh_spec.attach(fresh);
  fresh.eval(seq);
  EXPECT_LT(nrmse(s.logits(), fresh.logits()), 1e-3);
  std::vector<int32_t> next = seq;
  next.push_back(7);
  Sampler greedy(*m, SamplingOptions{.temperature = 0.0f});
  const std::span<const int32_t> a = spec.propose(next, greedy, 3);
  const std::vector<int32_t> pa(a.begin(), a.end());
  const std::span<const int32_t> b = fresh_spec.propose(next, greedy, 3);
  EXPECT_EQ(pa, std::vector<int32_t>(b.begin(), b.end()));
  EXPECT_EQ(pa.size(), 3u);
}

TEST(Mtp, CatchingUpWhileNotProposingKeepsTheProposals) {
  // While speculation pauses (no room, or the controller finds it does not pay) the MTP block
  // still reads the kept hidden states once a micro-batch of them waits; the proposals after the
  // pause equal those of a speculator that read them all at once.
  const File f("mtp-lazy.gguf", shape(true));
  ModelOptions mo;
  mo.path = f.path.string();
  mo.threads = 2;
  mo.ctx = 128;
  mo.ubatch = 6;
  mo.device = DeviceChoice::Cpu;
  auto m = Model::load(mo);
  std::vector<int32_t> seq;
  for (int i = 0; i < 23; ++i) seq.push_back(int32_t(1 + (i * 37) % 500));
  Sampler greedy(*m, SamplingOptions{.temperature = 0.0f});
  Speculator paused(*m, mtp_options(3)), direct(*m, mtp_options(3));
  Session a(*m), b(*m);
  paused.attach(a);
  direct.attach(b);
  a.eval(std::span(seq).first(10));
  EXPECT_TRUE(paused.propose(std::span(seq).first(11), greedy, 0).empty());  // reads 10 rows
  a.eval(std::span(seq).subspan(10, 12));
  EXPECT_TRUE(paused.propose(seq, greedy, 0).empty());
  b.eval(std::span(seq).first(22));
  const std::span<const int32_t> pa = paused.propose(seq, greedy, 3);
  const std::vector<int32_t> got(pa.begin(), pa.end());
  const std::span<const int32_t> pb = direct.propose(seq, greedy, 3);
  EXPECT_EQ(got, std::vector<int32_t>(pb.begin(), pb.end()));
  EXPECT_EQ(got.size(), 3u);
}

TEST(Mtp, SpeculativeSamplingRuns) {
  // temperature > 0: the proposals are drawn from the MTP block's distribution and verified by
  // speculative sampling (model/speculative.h, tested on its own); the cache ends up holding
  // exactly the prompt and the generated tokens.
  const File f("mtp-sample.gguf", shape(true));
  auto m = load(f);
  Speculator spec(*m, mtp_options(2));
  Session s(*m);
  GenerateOptions g;
  g.n_predict = 30;
  g.stop_at_eog = false;
  g.sampling.temperature = 1.0f;
  g.sampling.seed = 3;
  g.speculator = &spec;
  const std::vector<int32_t> prompt = {1, 2, 3, 4};
  const GenerateResult r = generate(s, prompt, g, nullptr);
  EXPECT_EQ(r.tokens.size(), 30u);
  EXPECT_GT(r.speculation.steps, 0);
  std::vector<int32_t> expect = prompt;
  expect.insert(expect.end(), r.tokens.begin(), r.tokens.end());
  EXPECT_EQ(std::vector<int32_t>(s.tokens().begin(), s.tokens().end()), expect);
}

// straw serve's slots: each proposes with its own MTP cache inside the shared steps; greedy text
// is unchanged, with a micro-batch smaller than a prompt and a repeated prompt (the prompt cache).
TEST(Mtp, ServerSlotsGiveTheSameGreedyText) {
  using namespace std::chrono_literals;
  const File f("mtp-serve.gguf", shape(true));
  for (int ubatch : {512, 6}) {
    SCOPED_TRACE(ubatch);
    ModelOptions mo;
    mo.path = f.path.string();
    mo.threads = 2;
    mo.ctx = 128;
    mo.ubatch = ubatch;
    mo.device = DeviceChoice::Cpu;
    auto m = Model::load(mo);
    const std::vector<std::string> prompts = {"the cat sat on the mat", "hello world",
                                              "the cat sat on the mat", "a b c a b c a b"};
    std::vector<std::string> expected;
    for (const std::string& p : prompts) {
      Session s(*m);
      GenerateOptions g;
      g.n_predict = 24;
      g.sampling.temperature = 0.0f;
      std::string text;
      generate(s, m->tokenize(p), g, [&](std::string_view t, int32_t) {
        text += t;
        return true;
      });
      expected.push_back(text);
    }
    serve::Engine engine(*m, {.parallel = 2, .speculative = mtp_options(2)});
    std::vector<std::shared_ptr<serve::Request>> reqs;
    for (const std::string& p : prompts) {
      serve::GenRequest g;
      g.prompt = m->tokenize(p);
      g.max_tokens = 24;
      g.sampling.temperature = 0.0f;
      reqs.push_back(engine.submit(std::move(g)));
    }
    int64_t proposed = 0;
    for (size_t i = 0; i < reqs.size(); ++i) {
      std::string got;
      serve::GenEvent e;
      for (;;) {
        ASSERT_TRUE(reqs[i]->next(e, 30s)) << "no event within 30 s";
        ASSERT_NE(e.kind, serve::GenEvent::Kind::Error) << e.error;
        got += e.text;
        if (e.kind == serve::GenEvent::Kind::Done) break;
      }
      EXPECT_EQ(got, expected[i]) << prompts[i];
      proposed += e.timings.draft_n;
    }
    EXPECT_GT(proposed, 0);
  }
}

TEST(Mtp, RefusesFilesWithoutTheBlock) {
  const File f("mtp-none.gguf", shape(false));
  auto m = load(f);
  EXPECT_EQ(m->info().n_mtp, 0);
  try {
    Speculator spec(*m, mtp_options(1));
    FAIL() << "a file without an MTP block was accepted";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("this file has no MTP/NextN layer"), std::string::npos) << msg;
    EXPECT_NE(msg.find("--spec ngram|draft"), std::string::npos) << msg;
  }
  // Without an attached session the proposer says what is missing.
  const File g("mtp-one.gguf", shape(true));
  auto m2 = load(g);
  Speculator spec(*m2, mtp_options(1));
  Session s(*m2);
  const std::vector<int32_t> seq = {1, 2, 3};
  s.eval(std::span(seq).first(2));
  Sampler greedy(*m2, SamplingOptions{.temperature = 0.0f});
  EXPECT_THROW(spec.propose(seq, greedy, 1), Error);
}

}  // namespace
