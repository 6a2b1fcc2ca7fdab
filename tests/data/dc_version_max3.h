/* tests/_cbuild.older_decoder (tests/test_export_v4_ints.py): force-included after dc_codec.h, makes dc_codec.c a decoder of versions
   1 to 3 (DC_VERSION_MAX before FORMAT.md section 17). A file of the repository, so that the
   build is the same command in every session (ccache finds it). */
#undef DC_VERSION_MAX
#define DC_VERSION_MAX 3u
