// A durable local spool of ledger rows that could not be written yet: an append-only JSON Lines
// file that one process owns (flock). A row is fsync'd before Add returns; a row that reached the
// ledger gets a tombstone line, and the file is emptied when nothing waits. A torn last line (a
// crash during a write) is cut off at open, so the next line starts clean.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "tenancy/store.h"

namespace terse::tenancy {

// Thread-safe.
class Spool {
 public:
  struct Entry {
    UsageRow row;
    std::string token;  // which booking spooled it
  };

  // Opens or creates the file (and its directory) and reads what waits in it.
  // kFailedPrecondition when another process (or Spool) has it open.
  static absl::StatusOr<std::unique_ptr<Spool>> Open(const std::string& path);
  ~Spool();

  // Appends `row` durably; false (nothing written) when its request id waits already.
  absl::StatusOr<bool> Add(const UsageRow& row, const std::string& token);
  bool Contains(const std::string& request_id) const;
  // What waits, oldest first.
  std::vector<Entry> Entries() const;
  // Forgets a row that reached the ledger. Tombstones are not fsync'd: a lost one only makes the
  // row replay again, which the ledger ignores.
  absl::Status Remove(const std::string& request_id);
  size_t size() const;

 private:
  Spool(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  absl::Status Load();
  absl::Status Append(const std::string& line, bool sync) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string path_;
  const int fd_;  // opened for append, flock'ed
  mutable absl::Mutex mu_;
  std::map<uint64_t, Entry> entries_ ABSL_GUARDED_BY(mu_);  // by order of arrival
  absl::flat_hash_map<std::string, uint64_t> by_id_ ABSL_GUARDED_BY(mu_);
  uint64_t next_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace terse::tenancy
