// Where the ranks sit: the number of ranks on this node, from MPI's
// shared-memory split (MPI_COMM_TYPE_SHARED), the same under mpirun, srun and
// any launcher; collective over the world.
#pragma once

namespace llamaft {

int ranks_per_node();

}  // namespace llamaft
