// llamaft: one SPMD binary. `llamaft <command> [options]`; `llamaft --config
// FILE` with no command means `train`. Errors print once, with the rank and
// host, and end every rank with the documented exit code:
//  - the command line and the configuration are checked on every rank before
//    the first collective, and the ranks agree (one all-reduce): the lowest
//    rank that failed prints, and all exit cleanly with its code;
//  - an error found later by one rank is printed there and that rank exits
//    with the code; mpirun (and srun -K1) then end the others. Rank 0 prints
//    at once and the others wait a moment first, so an error that every rank
//    meets at the same point prints once, from rank 0, before the job ends.
//    No MPI_Abort: its help text, and the ORTE errors of several ranks
//    aborting at once, buried the one line that mattered.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <thread>

#include "checkpoint/preemption.hpp"
#include "cli/command.hpp"
#include "comm/communicator.hpp"
#include "core/error.hpp"
#include "core/fault_points.hpp"
#include "train/trainer.hpp"

namespace {

bool launched_by_mpi() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "SLURM_STEP_NUM_TASKS"})
    if (std::getenv(var)) return true;
  return false;
}

void print_help() {
  std::cout << "llamaft " << LLAMAFT_VERSION
            << ": fine-tune Llama models with FSDP over MPI.\n\n"
               "Usage: llamaft <command> [options]\n"
               "       llamaft --config FILE [options]     (same as `llamaft train`)\n\n"
               "Commands:\n";
  for (const auto& c : llamaft::all_commands())
    std::cout << "  " << c.name << std::string(c.name.size() < 10 ? 10 - c.name.size() : 1, ' ')
              << c.summary << "\n";
  std::cout << "\n`llamaft <command> --help` lists a command's options. Any config key can be\n"
               "given as --section.key VALUE and wins over the --config file.\n";
}

int dispatch(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    print_help();
    return args.empty() ? llamaft::kExitUserError : llamaft::kExitOk;
  }
  if (args[0] == "--version" || args[0] == "version") {
    std::cout << "llamaft " << LLAMAFT_VERSION << "\n";
    return 0;
  }
  std::string name = args[0];
  if (name.rfind("--", 0) == 0) {
    name = "train";  // `llamaft --config FILE` is how users type it
  } else {
    args.erase(args.begin());
  }
  for (const auto& cmd : llamaft::all_commands()) {
    if (cmd.name != name) continue;
    llamaft::Config cfg;
    if (cmd.name == "train" && llamaft::mpi_active()) {
      // Every rank checks the command line and the config, then all agree.
      std::string error;
      int code = 0;
      bool go = true;
      try {
        go = llamaft::parse_command_line(cmd, args, cfg);
        if (go) llamaft::Trainer::validate(cfg, llamaft::mpi_world().size);
      } catch (const llamaft::Error& e) {
        error = e.what(), code = e.exit_code();
      }
      const int first = llamaft::agree_on_failure(code);
      if (first >= 0) {
        throw llamaft::Error::agreed(error, code, /*print_here=*/first == llamaft::process_rank());
      }
      if (!go) return 0;
      return cmd.run(cfg);
    }
    if (!llamaft::parse_command_line(cmd, args, cfg)) return 0;
    // Only train and eval --task are SPMD; under a launcher the other commands
    // run on rank 0 alone (every rank still validates the command line above).
    const bool spmd = cmd.name == "eval" && !cfg.get_string("eval.task").empty();
    if (cmd.name != "train" && !spmd && llamaft::process_rank() > 0) return 0;
    return cmd.run(cfg);
  }
  std::string near, list;
  size_t best = 4;
  for (const auto& cmd : llamaft::all_commands()) {
    list += (list.empty() ? "" : ", ") + cmd.name;
    const size_t dist = llamaft::edit_distance(name, cmd.name);
    if (dist < best) best = dist, near = cmd.name;
  }
  LLAMAFT_FAIL("unknown command '", name, "'", near.empty() ? "" : "; did you mean '" + near + "'?",
               " (commands: ", list, ")");
}

// LLAMAFT_READY_DIR (set by jobs/slurm/preemptible.sbatch): each rank drops
// a file there once a preemption signal can no longer kill it, so that the
// batch script holds back a signal that arrives before every rank can catch
// it (before mpirun has started the ranks, or between Open MPI's fork and
// exec) instead of having mpirun drop it or kill a rank with it.
void mark_ready() {
  const char* dir = std::getenv("LLAMAFT_READY_DIR");
  if (dir == nullptr || *dir == '\0') return;
  const char* rank = nullptr;
  for (const char* var : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID", "PMI_RANK"})
    if ((rank = std::getenv(var)) != nullptr) break;
  const std::string path = std::string(dir) + "/rank." + (rank ? rank : "0");
  if (std::FILE* f = std::fopen(path.c_str(), "w")) std::fclose(f);
}

// One line on stderr, written whole (no interleaving with another rank's
// line on a shared terminal). Outside an agreement, ranks other than 0 wait
// first: when every rank fails alike, rank 0's line is the one printed and
// the launcher ends the job before the others speak.
constexpr auto kReportDelay = std::chrono::seconds(3);

void report(const std::string& what, bool agreed) {
  if (!agreed && llamaft::process_rank() > 0 && llamaft::mpi_world().size > 1)
    std::this_thread::sleep_for(kReportDelay);
  const std::string line = llamaft::where_prefix() + what + "\n";
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

// A preemption signal from the first moment: the handlers go in from the
// executable's .preinit_array, which the dynamic loader runs before any
// shared library's initialiser (OpenBLAS's and CUDA's take about 0.1 s), so
// a signal that arrives while the libraries, MPI and the model load is kept
// and honoured at the first step boundary instead of killing the rank.
void preinit(int, char**, char**) { llamaft::install_default_preemption_handlers(); }
__attribute__((section(".preinit_array"), used)) void (*const preinit_entry)(int, char**, char**) = preinit;

}  // namespace

int main(int argc, char** argv) {
  // MPI comes up for `train` and whenever a launcher started us, so every
  // rank can be brought down together on an error.
  bool wants_train = argc > 1 && (std::strcmp(argv[1], "train") == 0 || std::strncmp(argv[1], "--config", 8) == 0);
  int code = 0;
  bool quiet_failure = false, agreed = false;
  // The preemption handlers are in place already (preinit, above); train
  // re-installs the configured list.
  mark_ready();
  try {
    if (wants_train || launched_by_mpi()) llamaft::init_mpi(&argc, &argv);
    llamaft::fault::arm_from_environment();
    code = dispatch(argc, argv);
  } catch (const llamaft::Error& e) {
    quiet_failure = e.is_reported_elsewhere();
    agreed = e.is_agreed();
    code = e.exit_code();
    if (!quiet_failure) report(std::string("llamaft: error: ") + e.what(), agreed);
  } catch (const std::bad_alloc&) {
    code = llamaft::kExitInternal;
    report("llamaft: error: out of host memory", false);
  } catch (const std::exception& e) {
    code = llamaft::kExitInternal;
    report(std::string("llamaft: internal error: ") + e.what(), false);
  }
  // Agreed by every rank (a config error; kExitRequeue: all checkpointed): a
  // clean exit everywhere, with the same code.
  if (code == 0 || code == llamaft::kExitRequeue || code == llamaft::kExitInterrupted || agreed) {
    llamaft::finalize_mpi();
    return code;
  }
  // A failure another rank reports: give that rank time to print and exit
  // first, so that the job ends from there. That rank may itself wait
  // kReportDelay before printing, so wait longer: with equal waits, MPICH's
  // Hydra ended the reporting rank before it printed in 2 of 12 trials.
  if (quiet_failure && llamaft::mpi_world().size > 1) std::this_thread::sleep_for(2 * kReportDelay);
  llamaft::end_job(code);
}
