# The one description of how libdc_huffdecode.so is built (issue 18). Used by
# tflite_kernels/Makefile (include) and setup.py (reads these `NAME := value` lines); mirrored by
# CMakeLists.txt, whose compile commands tests/test_install.py checks against it.
#
# DC_WERROR is for builds by the project's own make/CMake/CI (warnings are bugs); pip installs
# (setup.py) leave it out, so that a newer compiler's new warning cannot break a user's install.
DC_SOURCES  := src/*.c
DC_INCLUDE  := include
DC_CFLAGS   := -std=c99 -O2 -fPIC -fvisibility=hidden -Wall -Wextra
DC_WERROR   := -Werror
DC_LDFLAGS  := -shared -Wl,-z,defs
DC_LIBS     := -lm -lpthread
