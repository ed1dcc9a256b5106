// TpRunner and LocalGroup (engine/parallel/): every rank runs each job,
// all-reduces sum every rank's tensor in rank order, all-gathers stack
// every rank's tensor in rank order (with and without spinning hand-offs),
// and a rank that fails between collectives aborts the group, so the others
// return its error instead of waiting forever (a hang would be a server
// that never answers).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <atomic>
#include <vector>

#include "engine/parallel/local_group.h"
#include "engine/parallel/tp_runner.h"

namespace kvstream {
namespace {

std::vector<Communicator*> Raw(const std::vector<std::unique_ptr<Communicator>>& c) {
  std::vector<Communicator*> out;
  for (const auto& x : c) out.push_back(x.get());
  return out;
}

TEST(TpRunner, EveryRankSumsEveryRanksTensor) {
  auto comms = MakeLocalGroup(3);
  TpRunner runner(Raw(comms));
  for (int job = 0; job < 20; ++job) {  // the group is reused job after job
    std::vector<at::Tensor> t(3);
    const absl::Status s = runner.RunAll([&](int r) {
      t[r] = at::full({4, 5}, static_cast<float>(r + 1 + job));
      return comms[r]->AllReduceSum(t[r]);
    });
    ASSERT_TRUE(s.ok()) << s;
    for (int r = 0; r < 3; ++r) EXPECT_TRUE(at::allclose(t[r], at::full({4, 5}, 6.0f + 3 * job))) << r;
  }
}

TEST(TpRunner, EveryRankGathersEveryRanksTensorInRankOrderAlsoWhenSpinning) {
  for (bool spin : {false, true}) {
    auto comms = MakeLocalGroup(3);
    TpRunner runner(Raw(comms), spin);
    for (int job = 0; job < 20; ++job) {
      std::vector<at::Tensor> out(3);
      const absl::Status s = runner.RunAll([&](int r) {
        const at::Tensor in = at::arange(6, at::kFloat).view({2, 3}) + 100 * r + job;
        out[r] = at::full({3, 2, 3}, -1.0f);  // poisoned
        return comms[r]->AllGather(in, out[r]);
      });
      ASSERT_TRUE(s.ok()) << s;
      for (int r = 0; r < 3; ++r) {
        for (int j = 0; j < 3; ++j) {
          EXPECT_TRUE(at::equal(out[r][j], at::arange(6, at::kFloat).view({2, 3}) + 100 * j + job))
              << "rank " << r << " slot " << j << " spin " << spin;
        }
      }
    }
  }
}

TEST(TpRunner, AFailingRankAbortsTheOthersInsteadOfHangingThem) {
  auto comms = MakeLocalGroup(3);
  TpRunner runner(Raw(comms));
  std::atomic<int> aborted{0};
  const absl::Status s = runner.RunAll([&](int r) -> absl::Status {
    if (r == 1) return absl::InternalError("rank 1 failed before its all-reduce");
    at::Tensor t = at::ones({8});
    absl::Status a = comms[r]->AllReduceSum(t);
    if (!a.ok()) ++aborted;
    return a;
  });
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(aborted.load(), 2);
  EXPECT_NE(std::string(s.message()).find("rank 1 failed"), std::string::npos) << s;
}

TEST(TpRunner, MismatchedShapesAreAnErrorOnEveryRank) {
  auto comms = MakeLocalGroup(2);
  TpRunner runner(Raw(comms));
  const absl::Status s = runner.RunAll([&](int r) {
    at::Tensor t = at::ones({r == 0 ? 4 : 5});
    return comms[r]->AllReduceSum(t);
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal) << s;
}

}  // namespace
}  // namespace kvstream
