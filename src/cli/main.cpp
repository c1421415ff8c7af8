// llamaft: one SPMD binary. `llamaft <command> [options]`; `llamaft --config
// FILE` with no command means `train`. Errors print once, with the rank, and
// bring every rank down with MPI_Abort and the documented exit code.
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <thread>

#include "cli/command.hpp"
#include "comm/communicator.hpp"
#include "core/error.hpp"
#include "core/fault_points.hpp"

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
    if (!llamaft::parse_command_line(cmd, args, cfg)) return 0;
    // Only train is SPMD; under a launcher the other commands run on rank 0
    // alone (every rank still validates the command line above).
    if (cmd.name != "train" && llamaft::process_rank() > 0) return 0;
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

}  // namespace

int main(int argc, char** argv) {
  // MPI comes up for `train` and whenever a launcher started us, so every
  // rank can be brought down together on an error.
  bool wants_train = argc > 1 && (std::strcmp(argv[1], "train") == 0 || std::strncmp(argv[1], "--config", 8) == 0);
  int code = 0;
  bool quiet_failure = false;
  try {
    if (wants_train || launched_by_mpi()) llamaft::init_mpi(&argc, &argv);
    llamaft::fault::arm_from_environment();
    code = dispatch(argc, argv);
  } catch (const llamaft::Error& e) {
    quiet_failure = e.is_reported_elsewhere();
    if (!quiet_failure) std::cerr << llamaft::where_prefix() << "llamaft: error: " << e.what() << std::endl;
    code = e.exit_code();
  } catch (const std::bad_alloc&) {
    std::cerr << llamaft::where_prefix() << "llamaft: error: out of host memory" << std::endl;
    code = llamaft::kExitInternal;
  } catch (const std::exception& e) {
    std::cerr << llamaft::where_prefix() << "llamaft: internal error: " << e.what() << std::endl;
    code = llamaft::kExitInternal;
  }
  // A rank whose failure another rank reports gives that rank time to print
  // and abort first, so the one message is not cut off by this rank's abort.
  if (quiet_failure) std::this_thread::sleep_for(std::chrono::seconds(2));
  // kExitRequeue is agreed by every rank (all checkpointed): a clean exit.
  if (code != 0 && code != llamaft::kExitRequeue) llamaft::abort_all(code);  // brings every rank down
  llamaft::finalize_mpi();
  return code;
}
