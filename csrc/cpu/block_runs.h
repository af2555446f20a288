// Active block index lists (host side) turned into runs of contiguous active channels.
#pragma once

#include <ATen/ATen.h>

#include <vector>

namespace amgp {

struct Run {
  int64_t start;   // first channel
  int64_t length;  // number of channels
  bool operator==(const Run& other) const { return start == other.start && length == other.length; }
};

struct BlockRuns {
  std::vector<Run> runs;  // sorted, adjacent active blocks merged
  int64_t channels = 0;   // total active channels
  bool all = false;       // every block active
};

// Validates `blocks` (1-D int32 on the CPU, sorted, unique, in range; undefined = all
// blocks) and merges adjacent blocks into channel runs. The last block may be short.
inline BlockRuns block_runs(const c10::optional<at::Tensor>& blocks, int64_t features,
                            int64_t block_size, const char* name, const char* op = "amgp.block_linear") {
  const int64_t num_blocks = (features + block_size - 1) / block_size;
  BlockRuns out;
  auto add_block = [&](int64_t b) {
    const int64_t start = b * block_size;
    const int64_t length = std::min(block_size, features - start);
    if (!out.runs.empty() && out.runs.back().start + out.runs.back().length == start)
      out.runs.back().length += length;
    else
      out.runs.push_back({start, length});
    out.channels += length;
  };
  if (!blocks.has_value() || !blocks->defined()) {
    for (int64_t b = 0; b < num_blocks; ++b) add_block(b);
    out.all = true;
    return out;
  }
  const at::Tensor& t = *blocks;
  TORCH_CHECK(t.dim() == 1, op, ": ", name, " must be 1-D, got ", t.dim(), "-D");
  TORCH_CHECK(t.scalar_type() == at::kInt, op, ": ", name, " must be int32, got ",
              t.scalar_type());
  TORCH_CHECK(t.device().is_cpu(), op, ": ", name, " must be on the CPU, got ",
              t.device());
  const at::Tensor c = t.contiguous();
  const int32_t* idx = c.const_data_ptr<int32_t>();
  for (int64_t i = 0; i < c.numel(); ++i) {
    TORCH_CHECK(idx[i] >= 0 && idx[i] < num_blocks, op, ": ", name, "[", i, "] = ",
                idx[i], " is out of range [0, ", num_blocks, ")");
    TORCH_CHECK(i == 0 || idx[i] > idx[i - 1], op, ": ", name,
                " must be sorted and unique (", name, "[", i, "] = ", idx[i], " follows ",
                idx[i - 1], ")");
    add_block(idx[i]);
  }
  out.all = c.numel() == num_blocks;
  return out;
}

}  // namespace amgp
