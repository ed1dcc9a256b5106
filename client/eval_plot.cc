// The passkey heat-map of `kvstream eval --plot` (declared in eval_report.h).
#include <map>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/eval_report.h"
#include "client/gnuplot_pipe.h"

namespace kvstream::client {

std::string EvalPlotScript(const nlohmann::ordered_json& report, const std::string& png_path) {
  const auto& strategies = report["strategies"];
  std::vector<const nlohmann::ordered_json*> with_passkey;
  for (const auto& s : strategies) {
    if (s.contains("passkey")) with_passkey.push_back(&s);
  }
  if (with_passkey.empty()) return "";
  const int panels = static_cast<int>(with_passkey.size());
  const std::string model = report["model"].value("name", "model");
  std::string script = absl::StrFormat(
      "set terminal pngcairo noenhanced size 760,%d font 'sans,10'\nset output %s\n"
      "set palette defined (0 '#d73027', 0.5 '#fee08b', 1 '#1a9850')\nset cbrange [0:1]\n"
      "set cblabel 'accuracy'\nset xlabel 'depth of the key (%% of the context)'\nset ylabel 'context (tokens)'\n"
      "set style fill solid 1.0 noborder\nunset key\n"
      "set multiplot layout %d,1 title %s\n",
      60 + 260 * panels, GnuplotQuote(png_path), panels,
      GnuplotQuote(absl::StrCat("passkey retrieval, ", model)));
  for (int p = 0; p < panels; ++p) {
    const auto& s = *with_passkey[static_cast<size_t>(p)];
    std::set<int> depth_set, context_set;
    for (const auto& c : s["passkey"]["cells"]) {
      depth_set.insert(c["depth"].get<int>());
      context_set.insert(c["context"].get<int>());
    }
    const std::vector<int> depths(depth_set.begin(), depth_set.end());
    const std::vector<int> contexts(context_set.begin(), context_set.end());
    std::map<int, int> dx, cy;
    std::vector<std::string> xtics, ytics;
    for (size_t i = 0; i < depths.size(); ++i) {
      dx[depths[i]] = static_cast<int>(i);
      xtics.push_back(absl::StrFormat("\"%d\" %d", depths[i], i));
    }
    for (size_t i = 0; i < contexts.size(); ++i) {
      cy[contexts[i]] = static_cast<int>(i);
      ytics.push_back(absl::StrFormat("\"%d\" %d", contexts[i], i));
    }
    std::vector<std::string> rows;
    for (const auto& c : s["passkey"]["cells"]) {
      if (!c["accuracy"].is_number()) continue;  // every request failed: left blank
      rows.push_back(absl::StrFormat("%d %d %.4f", dx[c["depth"].get<int>()], cy[c["context"].get<int>()],
                                     c["accuracy"].get<double>()));
    }
    std::string title = s["description"].get<std::string>();
    if (rows.empty()) {
      // Every request failed (e.g. UNIMPLEMENTED): an empty panel that says so.
      rows.push_back("-10 -10 0");
      absl::StrAppend(&title, " (no answers)");
    }
    const std::string block = absl::StrCat("pk", p);
    absl::StrAppend(&script, DataBlock(block, rows),
                    absl::StrFormat("set title %s\nset xtics (%s)\nset ytics (%s)\n"
                                    "set xrange [-0.5:%f]\nset yrange [-0.5:%f]\n",
                                    GnuplotQuote(title), absl::StrJoin(xtics, ", "),
                                    absl::StrJoin(ytics, ", "), depths.size() - 0.5, contexts.size() - 0.5),
                    "plot $", block, " using 1:2:(0.5):(0.5):3 with boxxyerror fc palette, \\\n     $", block,
                    " using 1:2:(sprintf('%.0f%%', $3*100)) with labels font 'sans,11'\n");
  }
  absl::StrAppend(&script, "unset multiplot\n");
  return script;
}

}  // namespace kvstream::client
