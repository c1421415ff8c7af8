// `llamaft track RUN_DIR`: replays a run folder's metrics.jsonl, config.cfg and
// run_info.json into W&B or MLflow with scripts/llamaft_track.py, in the
// foreground. The run's own config.cfg gives the tracker settings; the command
// line wins. A run the follower already logged (tracker/<name>.json) is
// continued, never duplicated, so this also completes a follower that was cut
// off, e.g. by the end of a Slurm job.
#include <spawn.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <vector>

#include "cli/command.hpp"
#include "core/error.hpp"
#include "train/tracker.hpp"

extern char** environ;

namespace llamaft {

int run_track(const Config& cfg) {
  const std::string dir = cfg.get_string("output.dir");
  LLAMAFT_REQUIRE(std::ifstream(dir + "/metrics.jsonl").good(), "llamaft track: '", dir,
                  "' has no metrics.jsonl: not a llamaft train output.dir");
  Config run_cfg;
  try {
    run_cfg.load_file(dir + "/config.cfg");
  } catch (const std::exception& e) {
    std::cerr << "llamaft track: note: " << e.what() << "; using defaults and the command line\n";
  }
  std::vector<std::string> overrides;
  for (const auto& k : global_schema().keys()) {
    const bool tracker_key = k.key == "output.tracker" || k.key.rfind("tracker.", 0) == 0;
    if (!tracker_key || !cfg.is_explicit(k.key)) continue;
    run_cfg.set(k.key, cfg.get_string(k.key), cfg.source(k.key));
    overrides.push_back(k.key + "=" + cfg.get_string(k.key));
  }
  const TrackerSettings tracker = TrackerSettings::from_config(run_cfg);
  LLAMAFT_REQUIRE(tracker.tracker != "none", "llamaft track: '", dir,
                  "' was trained with output.tracker = none; say which tracker: --tracker wandb or --tracker mlflow");
  const std::string script = tracker_script_path(tracker);
  LLAMAFT_REQUIRE(!script.empty(), "llamaft track: llamaft_track.py not found; set --tracker.script PATH");
  const std::string& python = tracker.python;
  std::vector<std::string> args = {python, script, "replay", dir};
  for (const auto& o : overrides) {
    args.push_back("--set");
    args.push_back(o);
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, python.c_str(), nullptr, nullptr, argv.data(), environ);
  LLAMAFT_REQUIRE(rc == 0, "llamaft track: cannot start '", python, "' (--python / tracker.python): ", std::strerror(rc));
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
  // The script said why (missing client, no metrics.jsonl, a client error).
  return kExitUserError;
}

}  // namespace llamaft
