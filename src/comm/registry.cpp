#include "comm/registry.hpp"

#include "core/error.hpp"

#ifdef LLAMAFT_HAS_CUDA
#include "comm/nccl_comm.hpp"
#endif

namespace llamaft {

std::unique_ptr<Communicator> make_device_communicator(Backend& be, Communicator& world, double timeout_s) {
  if (!be.native_stream()) return nullptr;  // a host backend: MPI on host buffers
#ifdef LLAMAFT_HAS_CUDA
  // NCCL's world is MPI_COMM_WORLD (the unique id travels over it), so
  // `world` must span it for both to name the same ranks.
  LLAMAFT_CHECK(world.size() == mpi_world().size, "the device communicator spans every rank: world has ",
                world.size(), " of ", mpi_world().size);
  return make_nccl_world_comm(be.device_ordinal(), timeout_s, static_cast<CUstream_st*>(be.native_stream()));
#else
  LLAMAFT_FAIL("internal: backend ", be.name(), " has a device stream but this llamaft was built without NCCL");
#endif
}

}  // namespace llamaft
