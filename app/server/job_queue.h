// The job queue of `inbetween serve`: jobs in a mutex-protected map, a FIFO of queued ids, and one
// worker thread that runs them in order on the single, loaded Pipeline. HTTP handlers only
// submit, read and cancel; SSE handlers wait on the condition variable for a job's next change.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "inbetween/pipeline.h"
#include "job.h"
#include "job_store.h"

namespace ib::server {

class JobQueue {
 public:
  // max_queue: how many jobs may wait (the running one not counted).
  JobQueue(Pipeline& pipeline, JobStore& store, size_t max_queue);
  ~JobQueue();
  JobQueue(const JobQueue&) = delete;
  JobQueue& operator=(const JobQueue&) = delete;

  // Before start(): takes the jobs found in the data dir. Finished jobs are kept as they are;
  // jobs that were queued are queued again (in their old order); a job that was running when the
  // server went down is marked failed ("server restarted"): it may be what brought it down.
  void restore(std::vector<Job> jobs);
  void start();

  enum class SubmitResult { Accepted, Full, Stopping };
  // Whether a submission would be accepted now (a cheap early check before reading images).
  SubmitResult can_submit() const;
  // Queues a job whose folder already holds its images; writes its job.json. `position`: its
  // place in the queue when it was accepted (1-based).
  SubmitResult submit(Job job, size_t* position = nullptr);

  // Jobs as they are, with queue_position read under the same lock as the state.
  std::optional<Job> get(const std::string& id) const;
  std::vector<Job> list(size_t limit) const;  // newest first
  // 1-based place among the waiting jobs; 0 when not waiting.
  size_t queue_position(const std::string& id) const;

  enum class CancelResult { Cancelled, Cancelling, AlreadyFinal, NotFound };
  // Queued: cancelled at once. Running: the progress callback throws ib::Cancelled at the next step.
  CancelResult cancel(const std::string& id);

  enum class RemoveResult { Removed, NotFinal, NotFound };
  // Forgets a finished job and deletes its folder (DELETE on a done, failed or cancelled job).
  RemoveResult remove(const std::string& id);

  // Finished jobs kept: at most keep_jobs of them (0: no limit), none finished more than
  // keep_seconds ago (0: no limit). Applied on start, after every job and once a minute.
  struct Retention {
    size_t keep_jobs = 0;
    double keep_seconds = 0;
  };
  void set_retention(Retention r) { retention_ = r; }  // before restore()

  // Blocks until job `id` changes past `seen_version`, the queue closes, or `timeout` passes.
  // Returns the job as it is then (nullopt when unknown).
  std::optional<Job> wait_change(const std::string& id, uint64_t seen_version, std::chrono::milliseconds timeout) const;

  // Stops taking jobs; cancels the running job unless finish_running; waits for the worker.
  // Queued jobs stay queued on disk and run after a restart. Then wakes every waiter.
  void shutdown(bool finish_running);
  void cancel_running();  // a second signal during a "finish" shutdown
  bool closed() const;

  struct Counts {
    size_t queued = 0, running = 0, done = 0, failed = 0, cancelled = 0;
  };
  Counts counts() const;
  size_t max_queue() const { return max_queue_; }

 private:
  void worker_loop();
  void run_job(const std::string& id);
  void update(Job& job);  // bumps the version and wakes waiters; call with mu_ held
  void persist(const Job& job);  // job.json; logs failures instead of throwing
  void prune();  // applies retention_
  void fill_position(Job& job) const;  // call with mu_ held

  Pipeline& pipeline_;
  JobStore& store_;
  const size_t max_queue_;
  Retention retention_;

  mutable std::mutex mu_;
  mutable std::condition_variable changed_;  // any job changed, or the queue closed
  std::condition_variable work_;             // a job was queued, or stopping
  std::map<std::string, Job> jobs_;
  std::deque<std::string> queue_;
  std::string running_;        // id of the running job, empty when idle
  bool cancel_running_ = false;
  bool stopping_ = false;
  bool closed_ = false;
  std::thread worker_;
};

}  // namespace ib::server
