# ccache, where it is installed and its cache directory (~/.cache/ccache) can be written (`make
# test` apt-installs it when root): DC_CCACHE is its path, empty otherwise; `make DC_CCACHE=`
# builds without it. Included by tflite_kernels/Makefile and the top-level Makefile (each can be
# run alone).
ifeq ($(origin DC_CCACHE),undefined)
DC_CCACHE := $(shell c=$$(command -v ccache) && d=$$("$$c" -k cache_dir 2>/dev/null) && mkdir -p "$$d" 2>/dev/null \
               && [ -w "$$d" ] && echo "$$c")
endif
