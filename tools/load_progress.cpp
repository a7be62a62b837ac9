#include "load_progress.h"

#include <unistd.h>

#include <algorithm>

#include "util/str.h"

namespace straw::cli {

namespace {

const char* const kDoing[] = {"mapping", "repacking", "uploading"};
const char* const kDone[] = {"mapped", "repacked", "uploaded"};

std::string rate(uint64_t bytes, double seconds) {
  return human_bytes(uint64_t(double(bytes) / std::max(seconds, 1e-3))) + "/s";
}

std::string duration(double s) {
  if (s < 60) return str(int(s + 0.5), " s");
  const int t = int(s + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%d min %02d s", t / 60, t % 60);
  return buf;
}

}  // namespace

bool stderr_is_terminal() {
  return ::isatty(STDERR_FILENO) == 1;
}

LoadProgressPrinter::LoadProgressPrinter(bool quiet, bool terminal, FILE* out)
    : quiet_(quiet), terminal_(terminal), out_(out) {}

std::function<void(const LoadProgress&)> LoadProgressPrinter::callback() {
  return [this](const LoadProgress& p) { update(p); };
}

void LoadProgressPrinter::update(const LoadProgress& p) {
  const int i = static_cast<int>(p.stage);
  if (i < 0 || i > 2) return;
  Stage& s = stages_[i];
  if (!s.seen) {
    s.seen = true;
    s.start = p.seconds;
  }
  s.done = p.done_bytes;
  s.total = p.total_bytes;
  s.last = p.seconds;
  // The mapping is one report: only the stages that take time are drawn.
  if (quiet_ || !terminal_ || p.stage == LoadProgress::Stage::Map) return;
  if (p.done_bytes < p.total_bytes && last_draw_ >= 0 && p.seconds - last_draw_ < 0.1) return;
  last_draw_ = p.seconds;
  draw(p.stage);
}

void LoadProgressPrinter::draw(LoadProgress::Stage stage) {
  const int i = static_cast<int>(stage);
  const Stage& s = stages_[i];
  const double elapsed = s.last - s.start;
  std::string line =
      str("straw: ", kDoing[i], " ", human_bytes(s.done), " of ", human_bytes(s.total));
  if (s.total > 0) line += str(" (", int(100.0 * double(s.done) / double(s.total)), "%)");
  if (elapsed > 0.05 && s.done > 0) {
    const double bps = double(s.done) / elapsed;
    line += ", " + rate(s.done, elapsed);
    if (s.done < s.total) line += ", ETA " + duration(double(s.total - s.done) / bps);
  }
  std::fprintf(out_, "\r%s\033[K", line.c_str());
  std::fflush(out_);
  line_drawn_ = true;
}

void LoadProgressPrinter::clear_line() {
  if (!line_drawn_) return;
  std::fprintf(out_, "\r\033[K");
  line_drawn_ = false;
}

std::string LoadProgressPrinter::summary() const {
  std::string s;
  for (int i = 0; i < 3; ++i) {
    const Stage& st = stages_[i];
    if (!st.seen || st.total == 0) continue;
    if (!s.empty()) s += "; ";
    s += str(kDone[i], " ", human_bytes(st.done));
    if (i == 0) continue;  // the mapping takes no time worth a rate
    const double elapsed = st.last - st.start;
    char secs[32];
    std::snprintf(secs, sizeof secs, "%.2f", elapsed);
    s += str(" in ", secs, " s (", rate(st.done, elapsed), ")");
  }
  return s;
}

void LoadProgressPrinter::finish() {
  if (quiet_) return;
  clear_line();
  const std::string s = summary();
  if (!s.empty()) std::fprintf(out_, "straw: load: %s\n", s.c_str());
  std::fflush(out_);
}

void LoadProgressPrinter::abandon() {
  if (quiet_) return;
  clear_line();
  std::fflush(out_);
}

}  // namespace straw::cli
