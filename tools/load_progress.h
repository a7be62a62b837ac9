// Renders Model::load's progress (ModelOptions::on_progress) on stderr for the commands that load
// a model. On a terminal: one live line per stage, "straw: repacking 4.20 GiB of 17.20 GiB (24%),
// 735.00 MiB/s, ETA 18 s", redrawn ten times a second; elsewhere (a log, a pipe) nothing while
// loading. Either way loading ends with one line (finish()):
//   straw: load: mapped 17.20 GiB; repacked 16.90 GiB in 23.40 s (739.50 MiB/s); uploaded ...
#pragma once

#include <cstdio>
#include <functional>
#include <string>

#include "straw/straw.h"

namespace straw::cli {

class LoadProgressPrinter {
 public:
  // terminal: redraw a live line (normally isatty(stderr)); quiet: print nothing at all.
  LoadProgressPrinter(bool quiet, bool terminal, FILE* out = stderr);
  // For ModelOptions::on_progress (the printer must outlive the load).
  std::function<void(const LoadProgress&)> callback();
  void update(const LoadProgress& p);
  // Clears the live line and prints the summary line (nothing when quiet). Call after the load,
  // also when it failed (abandon() then: the live line is cleared, no summary).
  void finish();
  void abandon();
  // "mapped 17.20 GiB; repacked 16.90 GiB in 23.40 s (739.50 MiB/s)"; stages without work are
  // left out.
  std::string summary() const;

 private:
  struct Stage {
    bool seen = false;
    uint64_t done = 0, total = 0;
    double start = 0, last = 0;  // seconds since the load began: first and latest report
  };
  void draw(LoadProgress::Stage s);
  void clear_line();

  bool quiet_, terminal_;
  FILE* out_;
  Stage stages_[3];
  double last_draw_ = -1;
  bool line_drawn_ = false;
};

// Whether stderr is a terminal.
bool stderr_is_terminal();

}  // namespace straw::cli
