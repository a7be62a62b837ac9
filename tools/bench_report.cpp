#include "bench_report.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <utility>

#include "bench_profile.h"
#include "util/json.h"

namespace straw::cli::bench {

namespace {

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// llama-bench's size and params columns: "373.71 MiB", "494.03 M".
std::string size_md(uint64_t bytes) {
  const double b = static_cast<double>(bytes);
  if (b >= 1024.0 * 1024 * 1024) return fmt("%.2f GiB", b / (1024.0 * 1024 * 1024));
  return fmt("%.2f MiB", b / (1024.0 * 1024));
}

std::string params_md(int64_t n) {
  const double p = static_cast<double>(n);
  return p >= 1e9 ? fmt("%.2f B", p / 1e9) : fmt("%.2f M", p / 1e6);
}

std::string number_list(const std::vector<double>& v, const char* f, const char* sep) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? sep : "") + fmt(f, v[i]);
  return out;
}

using Fields = std::vector<std::pair<std::string, std::string>>;

// The fields of one row, in order, as (name, JSON value); CSV prints the same values.
Fields fields(const Row& w, const ReportOptions& o) {
  const TestResult& r = w.r;
  Fields f = {
      {"cpu_info", json_string(o.cpu_info)},
      {"cpu_kernels", json_string(o.cpu_kernels)},
      {"backends", json_string(w.on_cpu() ? "CPU" : "CUDA")},
      {"placement", json_string(w.placement)},
      {"model_filename", json_string(w.path)},
      {"model_type", json_string(w.model->label)},
      {"model_bytes", std::to_string(w.model->bytes)},
      {"model_n_params", std::to_string(w.model->n_params)},
      {"threads", std::to_string(r.spec.threads)},
      {"n_ubatch", std::to_string(r.spec.ubatch)},
      {"n_gpu_layers", std::to_string(w.gpu_layers)},
      {"n_prompt", std::to_string(r.spec.n_prompt)},
      {"n_gen", std::to_string(r.spec.n_gen)},
      {"n_depth", std::to_string(r.spec.n_depth)},
      {"type_k", json_string(o.type_k)},
      {"type_v", json_string(o.type_v)},
      {"test", json_string(r.spec.name())},
      {"avg_ns", fmt("%.0f", r.avg_ns)},
      {"stddev_ns", fmt("%.0f", r.stddev_ns)},
      {"avg_ts", fmt("%.6f", r.avg_ts)},
      {"stddev_ts", fmt("%.6f", r.stddev_ts)},
      {"samples_ns", "[" + number_list(r.samples_ns, "%.0f", ", ") + "]"},
      {"samples_ts", "[" + number_list(r.samples_ts, "%.6f", ", ") + "]"},
  };
  if (r.spec.n_gen > 0) {
    f.push_back({"bytes_per_token", fmt("%.0f", w.bytes_per_token)});
    f.push_back({"achieved_bytes_per_s", fmt("%.0f", w.achieved)});
    if (w.on_cpu()) {
      f.push_back({"bandwidth_bytes_per_s", fmt("%.0f", w.bandwidth)});
      f.push_back({"roofline_fraction", fmt("%.6f", w.roofline)});
    }
  }
  return f;
}

// A JSON value as a CSV cell: strings keep their quotes; a list becomes one quoted cell.
std::string csv_cell(const std::string& json_value) {
  if (!json_value.empty() && json_value[0] == '[')
    return "\"" + json_value.substr(1, json_value.size() - 2) + "\"";
  return json_value;
}

}  // namespace

void print_md(const std::vector<Row>& rows, const ReportOptions& o) {
  std::string out =
      "| model                          |       size |     params | backend    | threads |";
  std::string rule =
      "| ------------------------------ | ---------: | ---------: | ---------- | ------: |";
  if (o.show_ngl) {
    out += "  ngl |";
    rule += " ---: |";
  }
  if (o.show_ubatch) {
    out += " n_ubatch |";
    rule += " -------: |";
  }
  out += "            test |                  t/s |     GB/s | roofline |\n";
  rule += " --------------: | -------------------: | -------: | -------: |\n";
  out += rule;
  char buf[512];
  for (const Row& w : rows) {
    std::snprintf(buf, sizeof buf, "| %-30s | %10s | %10s | %-10s | %7d |", w.model->label.c_str(),
                  size_md(w.model->bytes).c_str(), params_md(w.model->n_params).c_str(),
                  w.on_cpu() ? "CPU" : "CUDA", w.r.spec.threads);
    out += buf;
    if (o.show_ngl) {
      const std::string ngl = w.gpu_layers < 0 ? "auto" : std::to_string(w.gpu_layers);
      std::snprintf(buf, sizeof buf, " %4s |", ngl.c_str());
      out += buf;
    }
    if (o.show_ubatch) {
      std::snprintf(buf, sizeof buf, " %8d |", w.r.spec.ubatch);
      out += buf;
    }
    const std::string ts = fmt("%.2f", w.r.avg_ts) + " ± " + fmt("%.2f", w.r.stddev_ts);
    const bool tg = w.r.spec.n_gen > 0;
    const std::string gbs = tg ? fmt("%.2f", w.achieved / 1e9) : "";
    const std::string roof = tg && w.on_cpu() ? fmt("%.1f %%", 100 * w.roofline) : "";
    // "±" is two bytes wide in UTF-8 but one column: pad that cell to 21 bytes.
    std::snprintf(buf, sizeof buf, " %15s | %21s | %8s | %8s |\n", w.r.spec.name().c_str(),
                  ts.c_str(), gbs.c_str(), roof.c_str());
    out += buf;
  }
  std::fputs(out.c_str(), stdout);
}

void print_json(const std::vector<Row>& rows, const ReportOptions& o) {
  std::string out = "[\n";
  for (size_t i = 0; i < rows.size(); ++i) {
    out += "  {\n";
    Fields f = fields(rows[i], o);
    if (!rows[i].r.profile.empty()) f.emplace_back("profile", profile_json(rows[i].r));
    for (size_t k = 0; k < f.size(); ++k)
      out +=
          "    " + json_string(f[k].first) + ": " + f[k].second + (k + 1 < f.size() ? ",\n" : "\n");
    out += i + 1 < rows.size() ? "  },\n" : "  }\n";
  }
  out += "]\n";
  std::fputs(out.c_str(), stdout);
}

void print_csv(const std::vector<Row>& rows, const ReportOptions& o) {
  // The union of the rows' fields (pp rows lack the tg ones), so that the columns line up.
  std::vector<std::string> names;
  for (const Row& w : rows)
    for (const auto& kv : fields(w, o))
      if (std::find(names.begin(), names.end(), kv.first) == names.end()) names.push_back(kv.first);
  std::string out;
  for (size_t k = 0; k < names.size(); ++k) out += (k ? "," : "") + names[k];
  out += "\n";
  for (const Row& w : rows) {
    const Fields f = fields(w, o);
    for (size_t k = 0; k < names.size(); ++k) {
      out += k ? "," : "";
      for (const auto& kv : f)
        if (kv.first == names[k]) out += csv_cell(kv.second);
    }
    out += "\n";
  }
  std::fputs(out.c_str(), stdout);
}

void print_bandwidth(const std::vector<Bandwidth>& bws, const std::string& format,
                     const std::string& cpu) {
  std::string out;
  if (format == "json") {
    out = "[\n";
    for (size_t i = 0; i < bws.size(); ++i) {
      const Bandwidth& b = bws[i];
      out +=
          "  {\"cpu_info\": " + json_string(cpu) + ", \"threads\": " + std::to_string(b.threads) +
          ", \"buffer_bytes\": " + std::to_string(b.buffer_bytes) +
          ", \"bandwidth_bytes_per_s\": " + fmt("%.0f", b.best) + ", \"samples_bytes_per_s\": [" +
          number_list(b.samples, "%.0f", ", ") + "]}" + (i + 1 < bws.size() ? ",\n" : "\n");
    }
    out += "]\n";
  } else if (format == "csv") {
    out = "cpu_info,threads,buffer_bytes,bandwidth_bytes_per_s,samples_bytes_per_s\n";
    for (const Bandwidth& b : bws)
      out += json_string(cpu) + "," + std::to_string(b.threads) + "," +
             std::to_string(b.buffer_bytes) + "," + fmt("%.0f", b.best) + ",\"" +
             number_list(b.samples, "%.0f", ", ") + "\"\n";
  } else {
    out = "| threads |     buffer | read GB/s (best) | passes (GB/s)\n";
    out += "| ------: | ---------: | ---------------: | -------------\n";
    char buf[256];
    for (const Bandwidth& b : bws) {
      std::vector<double> gbs;
      for (double s : b.samples) gbs.push_back(s / 1e9);
      std::snprintf(buf, sizeof buf, "| %7d | %10s | %16.2f | %s\n", b.threads,
                    size_md(b.buffer_bytes).c_str(), b.best / 1e9,
                    number_list(gbs, "%.2f", " ").c_str());
      out += buf;
    }
  }
  std::fputs(out.c_str(), stdout);
}

std::string cpu_info() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) != 0) continue;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    const size_t start = line.find_first_not_of(' ', colon + 1);
    return start == std::string::npos ? "unknown" : line.substr(start);
  }
  return "unknown";
}

}  // namespace straw::cli::bench
