#include "job_queue.h"

#include <algorithm>

#include "core/log.h"
#include "inbetween/error.h"
#include "inbetween/video.h"
#include "story_request.h"

namespace ib::server {

JobQueue::JobQueue(Pipeline& pipeline, JobStore& store, size_t max_queue)
    : pipeline_(pipeline), store_(store), max_queue_(max_queue) {}

JobQueue::~JobQueue() {
  if (worker_.joinable()) shutdown(false);
}

void JobQueue::restore(std::vector<Job> jobs) {
  size_t requeued = 0, interrupted = 0;
  for (Job& job : jobs) {
    if (job.state == JobState::Running) {
      job.state = JobState::Failed;
      job.error = "server restarted";
      job.finished = unix_now();
      job.remaining_s = -1;
      persist(job);
      ++interrupted;
    } else if (job.state == JobState::Queued) {
      job.stage.clear();
      job.step = job.total = 0;
      queue_.push_back(job.id);
      ++requeued;
    }
    jobs_[job.id] = std::move(job);
  }
  spdlog::info("data dir: {} jobs ({} queued again, {} interrupted marked failed)", jobs_.size(), requeued,
               interrupted);
  prune();
}

void JobQueue::start() { worker_ = std::thread([this] { worker_loop(); }); }

JobQueue::SubmitResult JobQueue::can_submit() const {
  std::lock_guard lock(mu_);
  if (stopping_) return SubmitResult::Stopping;
  if (queue_.size() >= max_queue_) return SubmitResult::Full;
  return SubmitResult::Accepted;
}

JobQueue::SubmitResult JobQueue::submit(Job job, size_t* position) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return SubmitResult::Stopping;
    if (queue_.size() >= max_queue_) return SubmitResult::Full;
  }
  job.state = JobState::Queued;
  // Written before the job becomes visible, so this write never races the worker's.
  store_.save(job);
  {
    std::lock_guard lock(mu_);
    if (stopping_) return SubmitResult::Stopping;
    if (queue_.size() >= max_queue_) return SubmitResult::Full;
    const std::string id = job.id;
    queue_.push_back(id);
    if (position != nullptr) *position = queue_.size();
    update(jobs_[id] = std::move(job));
  }
  work_.notify_one();
  return SubmitResult::Accepted;
}

std::optional<Job> JobQueue::get(const std::string& id) const {
  std::lock_guard lock(mu_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return std::nullopt;
  Job job = it->second;
  fill_position(job);
  return job;
}

void JobQueue::fill_position(Job& job) const {
  job.queue_position = 0;
  if (job.state != JobState::Queued) return;
  auto it = std::find(queue_.begin(), queue_.end(), job.id);
  if (it != queue_.end()) job.queue_position = static_cast<size_t>(it - queue_.begin()) + 1;
}

std::vector<Job> JobQueue::list(size_t limit) const {
  std::vector<Job> out;
  {
    std::lock_guard lock(mu_);
    out.reserve(jobs_.size());
    for (const auto& [id, job] : jobs_) {
      out.push_back(job);
      fill_position(out.back());
    }
  }
  std::sort(out.begin(), out.end(), [](const Job& a, const Job& b) {
    return a.created != b.created ? a.created > b.created : a.id > b.id;
  });
  if (out.size() > limit) out.resize(limit);
  return out;
}

size_t JobQueue::queue_position(const std::string& id) const {
  std::lock_guard lock(mu_);
  auto it = std::find(queue_.begin(), queue_.end(), id);
  return it == queue_.end() ? 0 : static_cast<size_t>(it - queue_.begin()) + 1;
}

JobQueue::CancelResult JobQueue::cancel(const std::string& id) {
  Job snapshot;
  {
    std::lock_guard lock(mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end()) return CancelResult::NotFound;
    Job& job = it->second;
    if (is_final(job.state)) return CancelResult::AlreadyFinal;
    if (job.state == JobState::Running) {
      cancel_running_ = true;
      if (!job.cancel_requested) {
        job.cancel_requested = true;
        update(job);  // pages watching the job show "cancelling" at once
      }
      return CancelResult::Cancelling;
    }
    queue_.erase(std::remove(queue_.begin(), queue_.end(), id), queue_.end());
    job.state = JobState::Cancelled;
    job.finished = unix_now();
    update(job);
    snapshot = job;
  }
  persist(snapshot);
  return CancelResult::Cancelled;
}

JobQueue::RemoveResult JobQueue::remove(const std::string& id) {
  {
    std::lock_guard lock(mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end()) return RemoveResult::NotFound;
    if (!is_final(it->second.state)) return RemoveResult::NotFinal;
    jobs_.erase(it);
  }
  changed_.notify_all();  // its event streams end
  store_.remove_job(id);
  spdlog::info("job {}: deleted", id);
  return RemoveResult::Removed;
}

void JobQueue::prune() {
  if (retention_.keep_jobs == 0 && retention_.keep_seconds <= 0) return;
  std::vector<std::string> gone;
  {
    std::lock_guard lock(mu_);
    std::vector<const Job*> finished;
    for (const auto& [id, job] : jobs_)
      if (is_final(job.state)) finished.push_back(&job);
    std::sort(finished.begin(), finished.end(), [](const Job* a, const Job* b) {
      return a->finished != b->finished ? a->finished > b->finished : a->id > b->id;
    });
    const double oldest = unix_now() - retention_.keep_seconds;
    for (size_t i = 0; i < finished.size(); ++i) {
      const bool too_many = retention_.keep_jobs > 0 && i >= retention_.keep_jobs;
      const bool too_old = retention_.keep_seconds > 0 && finished[i]->finished < oldest;
      if (too_many || too_old) gone.push_back(finished[i]->id);
    }
    for (const std::string& id : gone) jobs_.erase(id);
  }
  if (gone.empty()) return;
  changed_.notify_all();
  for (const std::string& id : gone) store_.remove_job(id);
  spdlog::info("retention (--keep-jobs {}, --keep-days {}): {} finished jobs deleted", retention_.keep_jobs,
               retention_.keep_seconds / 86400, gone.size());
}

std::optional<Job> JobQueue::wait_change(const std::string& id, uint64_t seen_version,
                                         std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mu_);
  // Looked up again after the wait: a finished job may have been deleted meanwhile.
  auto changed = [&] {
    auto it = jobs_.find(id);
    return closed_ || it == jobs_.end() || it->second.version > seen_version;
  };
  if (jobs_.find(id) == jobs_.end()) return std::nullopt;
  changed_.wait_for(lock, timeout, changed);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return std::nullopt;
  Job job = it->second;
  fill_position(job);
  return job;
}

void JobQueue::shutdown(bool finish_running) {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    if (!finish_running && !running_.empty()) {
      cancel_running_ = true;
      Job& job = jobs_.at(running_);
      job.cancel_requested = true;
      update(job);
    }
  }
  work_.notify_all();
  if (worker_.joinable()) worker_.join();
  {
    std::lock_guard lock(mu_);
    closed_ = true;
  }
  changed_.notify_all();
}

void JobQueue::cancel_running() {
  std::lock_guard lock(mu_);
  if (running_.empty()) return;
  cancel_running_ = true;
  Job& job = jobs_.at(running_);
  job.cancel_requested = true;
  update(job);
}

bool JobQueue::closed() const {
  std::lock_guard lock(mu_);
  return closed_;
}

JobQueue::Counts JobQueue::counts() const {
  std::lock_guard lock(mu_);
  Counts c;
  for (const auto& [id, job] : jobs_) {
    switch (job.state) {
      case JobState::Queued: ++c.queued; break;
      case JobState::Running: ++c.running; break;
      case JobState::Done: ++c.done; break;
      case JobState::Failed: ++c.failed; break;
      case JobState::Cancelled: ++c.cancelled; break;
    }
  }
  return c;
}

void JobQueue::update(Job& job) {
  ++job.version;
  changed_.notify_all();
}

void JobQueue::persist(const Job& job) {
  try {
    store_.save(job);
  } catch (const std::exception& e) {
    spdlog::error("job {}: cannot write job.json: {}", job.id, e.what());
  }
}

void JobQueue::worker_loop() {
  for (;;) {
    std::string id;
    {
      std::unique_lock lock(mu_);
      // Awake once a minute without work, for the retention rule's --keep-days.
      while (!work_.wait_for(lock, std::chrono::seconds(60), [&] { return stopping_ || !queue_.empty(); })) {
        lock.unlock();
        prune();
        lock.lock();
      }
      if (stopping_) return;  // queued jobs stay queued on disk
      id = queue_.front();
      queue_.pop_front();
      running_ = id;
      cancel_running_ = false;
    }
    run_job(id);
    {
      std::lock_guard lock(mu_);
      running_.clear();
      cancel_running_ = false;
    }
    prune();
  }
}

// Everything around the pipeline is caught: a failing job is marked failed, the server goes on.
void JobQueue::run_job(const std::string& id) {
  Job snapshot;
  {
    std::lock_guard lock(mu_);
    Job& job = jobs_.at(id);
    job.state = JobState::Running;
    job.started = unix_now();
    job.stage = "images";
    update(job);
    snapshot = job;
  }
  persist(snapshot);
  spdlog::info("job {}: running ({} frames, {} steps)", id, snapshot.params.gen.frames, snapshot.params.gen.steps);

  auto last_bump = std::chrono::steady_clock::now();
  const ProgressFn progress = [&](const Progress& p) {
    std::lock_guard lock(mu_);
    if (cancel_running_) throw Cancelled();
    Job& job = jobs_.at(id);
    const bool moved = p.stage != job.stage || p.step != job.step || p.total != job.total || p.segment != job.segment;
    job.segment = p.segment;
    job.segments = p.segments;
    job.stage = p.stage;
    job.step = p.step;
    job.total = p.total;
    job.elapsed_s = p.elapsed_s;
    job.remaining_s = p.remaining_s;
    job.stage_remaining_s = p.stage_remaining_s;
    // Waiters wake for every step, and at most once a second for finer-grained calls.
    const auto now = std::chrono::steady_clock::now();
    if (moved || now - last_bump >= std::chrono::seconds(1)) {
      last_bump = now;
      update(job);
    }
  };

  JobState final_state = JobState::Done;
  std::string error;
  GeneratedVideo video;
  try {
    // video.mp4 (H.264), encoded while the decode makes its frames (a story's segment by segment).
    VideoFileWriter writer(store_.video_path(id), snapshot.params.fps);
    video = snapshot.params.keyframe_files.empty()
                ? pipeline_.generate(generate_options(snapshot.params, store_.job_dir(id)), progress, writer.frames())
                : run_story(pipeline_, snapshot.params, store_.job_dir(id), progress, writer.frames());
    {
      std::lock_guard lock(mu_);
      Job& job = jobs_.at(id);
      job.stage = "write";
      job.step = 0;
      job.total = 1;
      update(job);
    }
    writer.finish(video);
    store_.refresh(id);
  } catch (const Cancelled&) {
    final_state = JobState::Cancelled;
  } catch (const std::exception& e) {
    final_state = JobState::Failed;
    error = e.what();
  } catch (...) {
    final_state = JobState::Failed;
    error = "unknown error";
  }

  // The final state becomes visible only once job.json says so, so a restart never contradicts
  // what a client saw. Nothing else writes a running job (cancel only sets the flag).
  {
    std::lock_guard lock(mu_);
    snapshot = jobs_.at(id);
  }
  snapshot.state = final_state;
  snapshot.error = error;
  snapshot.finished = unix_now();
  snapshot.elapsed_s = snapshot.finished - snapshot.started;
  snapshot.remaining_s = final_state == JobState::Done ? 0 : -1;
  snapshot.stage_remaining_s = -1;
  if (final_state == JobState::Done) {
    snapshot.step = snapshot.total = 1;
    snapshot.seed_used = video.seed;
    snapshot.out_frames = video.frames;
    snapshot.out_width = video.width;
    snapshot.out_height = video.height;
  }
  persist(snapshot);
  {
    std::lock_guard lock(mu_);
    Job& job = jobs_.at(id);
    const uint64_t version = job.version;
    job = snapshot;
    job.version = version;
    update(job);
  }
  if (final_state == JobState::Failed) {
    spdlog::warn("job {}: failed after {:.1f} s: {}", id, snapshot.elapsed_s, error);
  } else {
    std::string stages;
    for (const StageTime& t : video.timings) stages += fmt::format(" {} {:.2f}", t.stage, t.seconds);
    spdlog::info("job {}: {} after {:.1f} s{}", id, state_name(final_state), snapshot.elapsed_s,
                 stages.empty() ? "" : " (" + stages.substr(1) + ")");
  }
}

}  // namespace ib::server
