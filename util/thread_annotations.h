// Clang's thread-safety capability attributes (-Wthread-safety), as LevelDB's
// port/thread_annotations.h spells them: members say which mutex guards them, functions which
// mutex they need, take or give back. Under GCC, or clang without the analysis, they are empty.
// Header-only macros; no state.
#pragma once

#if defined(__clang__) && !defined(SWIG)
#define DKIMROTOR_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define DKIMROTOR_THREAD_ANNOTATION(x)
#endif

#define CAPABILITY(x) DKIMROTOR_THREAD_ANNOTATION(capability(x))
#define SCOPED_CAPABILITY DKIMROTOR_THREAD_ANNOTATION(scoped_lockable)
#define GUARDED_BY(x) DKIMROTOR_THREAD_ANNOTATION(guarded_by(x))
#define PT_GUARDED_BY(x) DKIMROTOR_THREAD_ANNOTATION(pt_guarded_by(x))
#define ACQUIRED_BEFORE(...) DKIMROTOR_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
#define ACQUIRED_AFTER(...) DKIMROTOR_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
#define REQUIRES(...) DKIMROTOR_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define REQUIRES_SHARED(...) DKIMROTOR_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))
#define ACQUIRE(...) DKIMROTOR_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define ACQUIRE_SHARED(...) DKIMROTOR_THREAD_ANNOTATION(acquire_shared_capability(__VA_ARGS__))
#define RELEASE(...) DKIMROTOR_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define RELEASE_SHARED(...) DKIMROTOR_THREAD_ANNOTATION(release_shared_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) DKIMROTOR_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
#define EXCLUDES(...) DKIMROTOR_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define ASSERT_CAPABILITY(x) DKIMROTOR_THREAD_ANNOTATION(assert_capability(x))
#define RETURN_CAPABILITY(x) DKIMROTOR_THREAD_ANNOTATION(lock_returned(x))
#define NO_THREAD_SAFETY_ANALYSIS DKIMROTOR_THREAD_ANNOTATION(no_thread_safety_analysis)
