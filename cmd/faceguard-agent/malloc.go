package main

/*
#include <malloc.h>
#include <stdlib.h>

// One malloc arena for the whole process instead of one for each thread that ever allocated (glibc
// makes up to eight per core). The agent's C memory is SQLite's (page caches, statements), a few MB,
// allocated from whichever of Go's threads runs a query; separate arenas keep their freed pages
// resident: about 2 MB of a busy terminal's steady state (BENCHMARKS.md, footprint). It runs when the
// binary is loaded, before any thread exists. MALLOC_ARENA_MAX in the environment still wins, and a C
// library without the option is left as it is.
__attribute__((constructor)) static void fg_one_malloc_arena(void) {
#ifdef M_ARENA_MAX
	if (getenv("MALLOC_ARENA_MAX") == NULL) {
		mallopt(M_ARENA_MAX, 1);
	}
#endif
}
*/
import "C"
