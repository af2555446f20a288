// Full-size weight gradients of pruned layers, kept per weight between backward calls, so that their
// inactive blocks are written once per mask instead of at every step (docs/design.md, "Weight gradients
// kept between steps"). The op contract still hands out a full-size gradient with exact zeros outside the
// active blocks; what changes is who writes those zeros, and how often.
//
// A kept buffer is written again in place only when nothing outside this cache holds its storage (the
// optimizer's zero_grad(set_to_none=True) dropped the gradient it became, and no user kept a reference);
// otherwise a fresh one is allocated, as before (zero_grad(set_to_none=False), accumulation over
// micro-batches, a saved reference). Only the active blocks are rewritten when the blocks are those of the
// last write and nothing wrote into the handed-out gradient since (its version counter, which param.grad
// shares, is unchanged); otherwise the whole buffer is written. Writes through `.data` escape version
// counters, as they escape autograd's own in-place checks.
#pragma once

#include <ATen/ATen.h>

#include <atomic>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "../outputs.h"
#include "block_runs.h"

namespace amgp {

// The gradient buffer for one call: `tensor` to write into, and whether its entries outside the active
// blocks already hold exact zeros (then only the active blocks need writing).
struct WeightGradTarget {
  at::Tensor tensor;
  bool zeros_kept;
};

class KeptWeightGrads {
 public:
  // The buffer for the weight gradient of `weight` with these active runs; `tensor` is handed out as
  // the op's result (a new tensor over the kept storage, so autograd can take it without a copy).
  WeightGradTarget target(const at::Tensor& weight, const BlockRuns& out_runs, const BlockRuns& in_runs) {
    std::lock_guard<std::mutex> lock(mutex_);
    sweep();  // buffers of weights that died since: freed at the next backward of any pruned layer
    const Key key = key_of(weight);
    auto it = entries_.find(key);
    if (it != entries_.end() && !usable(it->second, weight)) {
      entries_.erase(it);
      it = entries_.end();
    }
    if (it == entries_.end()) {
      Entry entry{c10::weak_intrusive_ptr<c10::StorageImpl>(weight.storage().getWeakStorageImpl()),
                  new_output(weight.sizes(), weight.options().memory_format(at::MemoryFormat::Contiguous)),
                  {}, {}, c10::VariableVersion(0), 0};
      it = entries_.emplace(key, std::move(entry)).first;
      return hand_out(it->second, out_runs, in_runs, false);
    }
    Entry& entry = it->second;
    const bool untouched = entry.handed_out_version.current_version() == entry.version_at_hand_out;
    const bool zeros_kept = untouched && entry.out_runs == out_runs.runs && entry.in_runs == in_runs.runs;
    return hand_out(entry, out_runs, in_runs, zeros_kept);
  }

  // How many pruned weight gradients were written whole, and how many as their active blocks only (for
  // tests and benchmarks: amgp_kernels.testing.kept_weight_grad_writes()).
  std::atomic<int64_t> whole_writes{0}, active_writes{0};

  // A weight whose blocks are all active again gets fresh full-size gradients: its buffer is released.
  void release(const at::Tensor& weight) {
    std::lock_guard<std::mutex> lock(mutex_);
    entries_.erase(key_of(weight));
  }

 private:
  struct Key {
    const c10::StorageImpl* storage;
    int64_t offset;
    bool operator==(const Key& other) const { return storage == other.storage && offset == other.offset; }
  };
  static Key key_of(const at::Tensor& weight) {
    return {weight.storage().unsafeGetStorageImpl(), weight.storage_offset()};
  }
  struct KeyHash {
    size_t operator()(const Key& k) const {
      return std::hash<const void*>()(k.storage) ^ (std::hash<int64_t>()(k.offset) << 1);
    }
  };
  struct Entry {
    c10::weak_intrusive_ptr<c10::StorageImpl> weight;  // whose gradient this is (a dead one frees the entry)
    at::Tensor buffer;                                  // full size, contiguous
    std::vector<Run> out_runs, in_runs;                 // the blocks last written; zeros everywhere else
    c10::VariableVersion handed_out_version;            // the version counter of the last tensor handed out
    uint32_t version_at_hand_out;
  };

  // Reusable in place: the same live weight, same shape and dtype, and no holder but this cache.
  static bool usable(const Entry& entry, const at::Tensor& weight) {
    return !entry.weight.expired() && entry.buffer.sizes() == weight.sizes() &&
           entry.buffer.scalar_type() == weight.scalar_type() && entry.buffer.storage().use_count() == 1;
  }

  WeightGradTarget hand_out(Entry& entry, const BlockRuns& out_runs, const BlockRuns& in_runs, bool zeros_kept) {
    // A new tensor (with its own version counter) over the kept storage, made without dispatched ops.
    auto impl = c10::make_intrusive<c10::TensorImpl>(c10::Storage(entry.buffer.storage()), entry.buffer.key_set(),
                                                     entry.buffer.dtype());
    impl->set_sizes_contiguous(entry.buffer.sizes());
    at::Tensor out(std::move(impl));
    entry.out_runs = out_runs.runs;
    entry.in_runs = in_runs.runs;
    entry.handed_out_version = out.unsafeGetTensorImpl()->version_counter();
    entry.version_at_hand_out = entry.handed_out_version.current_version();
    (zeros_kept ? active_writes : whole_writes).fetch_add(1, std::memory_order_relaxed);
    return {out, zeros_kept};
  }

  void sweep() {
    for (auto it = entries_.begin(); it != entries_.end();)
      it = it->second.weight.expired() ? entries_.erase(it) : std::next(it);
  }

  std::mutex mutex_;
  std::unordered_map<Key, Entry, KeyHash> entries_;
};

// Process-wide, never destroyed (tensors freed after torch's allocators at exit would crash).
inline KeptWeightGrads& kept_weight_grads() {
  static auto* cache = new KeptWeightGrads();
  return *cache;
}

}  // namespace amgp
