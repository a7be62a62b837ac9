#include "cli.h"

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <sstream>

#include "util/str.h"

namespace straw::cli {

Args::Args(const std::vector<Option>& options, int argc, char** argv, int first) {
  auto find_long = [&](const std::string& n) -> const Option* {
    for (const Option& o : options)
      if (o.name == n) return &o;
    return nullptr;
  };
  auto find_short = [&](char c) -> const Option* {
    for (const Option& o : options)
      if (o.short_name == c) return &o;
    return nullptr;
  };
  auto find_dash = [&](const std::string& n) -> const Option* {
    for (const Option& o : options)
      if (!o.dash_name.empty() && o.dash_name == n) return &o;
    return nullptr;
  };
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    const Option* opt = nullptr;
    std::optional<std::string> inline_value;
    if (a == "--") {
      for (++i; i < argc; ++i) positional_.push_back(argv[i]);
      break;
    } else if (a.rfind("--", 0) == 0) {
      std::string name = a.substr(2);
      if (auto eq = name.find('='); eq != std::string::npos) {
        inline_value = name.substr(eq + 1);
        name = name.substr(0, eq);
      }
      opt = find_long(name);
      if (!opt) throw UsageError("unknown option '--" + name + "'");
    } else if (a.size() >= 2 && a[0] == '-' && !std::isdigit(static_cast<unsigned char>(a[1]))) {
      if (a.size() != 2) {
        opt = find_dash(a.substr(1));
        if (!opt) throw UsageError("unknown option '" + a + "' (short options take one letter)");
      } else {
        opt = find_short(a[1]);
      }
      if (!opt) throw UsageError("unknown option '" + a + "'");
    } else {
      positional_.push_back(a);
      continue;
    }
    if (opt->takes_value) {
      if (inline_value) {
        values_[opt->name].push_back(*inline_value);
      } else {
        if (i + 1 >= argc) throw UsageError("option '--" + opt->name + "' needs a value");
        values_[opt->name].push_back(argv[++i]);
      }
    } else {
      if (inline_value) throw UsageError("option '--" + opt->name + "' takes no value");
      values_[opt->name].push_back("1");
    }
  }
}

std::optional<std::string> Args::get(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second.back();
}

std::vector<std::string> Args::get_all(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

std::string Args::get_or(const std::string& name, const std::string& fallback) const {
  auto v = get(name);
  return v ? *v : fallback;
}

int64_t Args::get_int(const std::string& name, int64_t fallback) const {
  auto v = get(name);
  if (!v) return fallback;
  char* end = nullptr;
  errno = 0;
  long long x = std::strtoll(v->c_str(), &end, 10);
  if (v->empty() || *end != '\0' || errno != 0)
    throw UsageError("option '--" + name + "' expects an integer, got '" + *v + "'");
  return x;
}

double Args::get_float(const std::string& name, double fallback) const {
  auto v = get(name);
  if (!v) return fallback;
  char* end = nullptr;
  double x = std::strtod(v->c_str(), &end);
  if (v->empty() || *end != '\0' || !std::isfinite(x))
    throw UsageError("option '--" + name + "' expects a number, got '" + *v + "'");
  return x;
}

std::string Args::require(const std::string& name) const {
  auto v = get(name);
  if (!v) throw UsageError("option '--" + name + "' is required");
  return *v;
}

std::string format_options(const std::vector<Option>& options) {
  std::ostringstream os;
  for (const Option& o : options) {
    std::string left = "  ";
    left += o.short_name ? std::string("-") + o.short_name + ", " : "    ";
    left += "--" + o.name;
    if (!o.dash_name.empty()) left += ", -" + o.dash_name;
    std::string help = o.help;
    if (o.takes_value) {
      // The help starts with the value's name ("N  threads"); show it after the option.
      auto sp = help.find("  ");
      if (sp != std::string::npos) {
        left += " " + help.substr(0, sp);
        help = help.substr(sp + 2);
      }
    }
    if (left.size() < 30)
      left.resize(30, ' ');
    else
      left += "  ";
    os << left << help << "\n";
  }
  return os.str();
}

uint64_t parse_size(const std::string& s) {
  const std::optional<uint64_t> v = parse_byte_size(s);
  if (!v)
    throw UsageError("'" + s +
                     "' is not a size (examples: 8GiB, 7.5G, 512MiB, 1000000; units B, "
                     "KiB, MiB, GiB, TiB or K, M, G, T)");
  return *v;
}

}  // namespace straw::cli
