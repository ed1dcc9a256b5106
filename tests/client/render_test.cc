// `kvstream render` prints a saved eval report's table (and draws its PNG)
// without a server; a file that is not a report, or a report missing fields,
// is an error with a message, never a crash.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/flags/flag.h"
#include "client/commands.h"
#include "client/load_flags.h"
#include "tests/test_paths.h"

namespace kvstream::client {
namespace {

using ::testing::HasSubstr;

std::string Temp(const std::string& name, const std::string& text) {
  const std::string path = (std::filesystem::temp_directory_path() / name).string();
  std::ofstream(path) << text;
  return path;
}

int Render(const std::string& report, const std::string& plot, std::string* out) {
  absl::SetFlag(&FLAGS_report, report);
  absl::SetFlag(&FLAGS_plot, plot);
  ::testing::internal::CaptureStdout();
  ::testing::internal::CaptureStderr();
  const int rc = RunRender(ParsedArgs{});
  *out = ::testing::internal::GetCapturedStdout() + ::testing::internal::GetCapturedStderr();
  return rc;
}

TEST(Render, SavedGpuReportPrintsEveryStrategyAndContext) {
  std::string out;
  const std::string report = testing::SourceDir() + "/bench/results/gpu/eval_akv_smollm2_h100.json";
  ASSERT_EQ(Render(report, "", &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("akv#5"));
  EXPECT_THAT(out, HasSubstr("by context, akv#5"));
  EXPECT_THAT(out, HasSubstr("3.06x"));  // the compact AKV's KV ratio on the 4K ppl documents
  EXPECT_THAT(out, HasSubstr("passkey accuracy, dense"));
}

TEST(Render, NotAReportOrMissingFieldsIsAnErrorNamingTheFile) {
  std::string out;
  EXPECT_NE(Render("", "", &out), 0);
  EXPECT_THAT(out, HasSubstr("--report"));
  EXPECT_NE(Render(Temp("render_not_json.json", "not json {"), "", &out), 0);
  EXPECT_THAT(out, HasSubstr("not a kvstream eval report"));
  EXPECT_NE(Render(Temp("render_wrong_kind.json", R"({"kind": "kvstream-bench", "strategies": []})"), "", &out), 0);
  EXPECT_NE(Render(Temp("render_no_label.json",
                        R"({"kind": "kvstream-eval", "strategies": [{"cache": {}, "errors": {}}]})"),
                   "", &out),
            0);
  EXPECT_THAT(out, HasSubstr("render_no_label.json"));
  EXPECT_NE(Render("/nonexistent/report.json", "", &out), 0);
}

}  // namespace
}  // namespace kvstream::client
