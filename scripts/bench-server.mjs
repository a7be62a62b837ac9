// A load generator for OpenAI-compatible servers (straw serve, llama-server).
//
//   node scripts/bench-server.mjs --url http://127.0.0.1:8080 --clients 4 --requests 3
//        [--max-tokens 128] [--prompt-words 60]
//     N concurrent clients, each sending R streamed completions one after the other; prints one
//     JSON line: aggregate generated tokens/s, mean and median time to first token.
//   node scripts/bench-server.mjs --url ... --second-turn [--history-tokens 2000]
//     a chat's next turn re-sends its history (sized in the model's tokens with the server's
//     /tokenize) plus the reply and a new question: prints the time to first token of both turns
//     (the second one shows the prompt cache).
//
// Every request asks for exactly --max-tokens tokens (ignore_eos, temperature 0) and carries a
// distinct prompt, so no server can reuse a cached prompt between clients.
const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) =>
  a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1] && !all[i + 1].startsWith("--") ? all[i + 1] : "1"]] : acc, []));
const url = args.url || "http://127.0.0.1:8080";
const words_list = ["river", "stone", "garden", "lamp", "window", "forest", "bread", "music", "cloud", "paper",
                    "horse", "silver", "candle", "bridge", "winter", "coffee", "engine", "letter", "mirror", "orange"];
const text = (seed, n) =>
  Array.from({ length: n }, (_, i) => words_list[(seed * 7 + i * 13 + (i >> 3)) % words_list.length]).join(" ");

// One streamed completion: time to first token, tokens generated, the text.
async function complete(prompt, max_tokens) {
  const body = { prompt, max_tokens, n_predict: max_tokens, temperature: 0, ignore_eos: true, stream: true,
                 cache_prompt: true };
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/completions`, { method: "POST", headers: { "Content-Type": "application/json" },
                                                    body: JSON.stringify(body) });
  if (!res.ok) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  const reader = res.body.getReader(), dec = new TextDecoder();
  let buf = "", ttft = null, chunks = 0, out = "", tokens = null, prompt_tokens = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const ev = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (!ev.startsWith("data: ") || ev === "data: [DONE]") continue;
      const j = JSON.parse(ev.slice(6));
      const t = j.choices && j.choices[0] && j.choices[0].text;
      if (t) {
        if (ttft === null) ttft = performance.now() - t0;
        out += t;
        chunks++;
      }
      if (j.usage) tokens = j.usage.completion_tokens, prompt_tokens = j.usage.prompt_tokens;
      if (j.timings && j.timings.predicted_n) tokens = j.timings.predicted_n;
      if (j.timings && j.timings.prompt_n && prompt_tokens === null) prompt_tokens = j.timings.prompt_n;
    }
  }
  return { ttft, tokens: tokens ?? chunks, text: out, prompt_tokens, ms: performance.now() - t0 };
}

if (args["second-turn"]) {
  // Words per token differ between vocabularies (a synthetic file's splits words finely): measure.
  const want = Number(args["history-tokens"] || 2000);
  const count = async (content) => {
    const res = await fetch(`${url}/tokenize`, { method: "POST", headers: { "Content-Type": "application/json" },
                                                 body: JSON.stringify({ content }) });
    if (!res.ok) throw new Error(`HTTP ${res.status} from /tokenize: ${await res.text()}`);
    return (await res.json()).tokens.length;
  };
  const per_word = (await count(text(1, 1000))) / 1000;
  const history = `Story: ${text(1, Math.max(1, Math.floor(want / per_word)))}`;
  const first = await complete(history, 16);
  const second = await complete(`${history}${first.text} What happened next?`, 16);
  console.log(JSON.stringify({ first_turn_ttft_ms: +first.ttft.toFixed(1), second_turn_ttft_ms: +second.ttft.toFixed(1),
                               first_turn_prompt_tokens: first.prompt_tokens }));
  process.exit(0);
}

const clients = Number(args.clients || 1), requests = Number(args.requests || 1);
const max_tokens = Number(args["max-tokens"] || 128), words = Number(args["prompt-words"] || 60);
const t0 = performance.now();
const results = (await Promise.all(Array.from({ length: clients }, async (_, c) => {
  const out = [];
  for (let r = 0; r < requests; r++) {
    const seed = c * 1000 + r;
    out.push(await complete(`Request ${seed}: ${text(seed, words)}`, max_tokens));
  }
  return out;
}))).flat();
const wall = (performance.now() - t0) / 1000;
const ttfts = results.map(r => r.ttft).sort((a, b) => a - b);
const total = results.reduce((s, r) => s + r.tokens, 0);
console.log(JSON.stringify({
  clients, requests: results.length, max_tokens, wall_s: +wall.toFixed(3), tokens: total,
  aggregate_tps: +(total / wall).toFixed(2),
  ttft_ms_mean: +(ttfts.reduce((s, x) => s + x, 0) / ttfts.length).toFixed(1),
  ttft_ms_median: +ttfts[Math.floor(ttfts.length / 2)].toFixed(1),
}));
