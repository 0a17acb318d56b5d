#include "store/base/rl_version.h"

#ifdef RELAY_GIT_REV
#define VERSION_TEXT RELAY_VERSION " (git " RELAY_GIT_REV ")"
#else
#define VERSION_TEXT RELAY_VERSION
#endif

const char *rl_version(void)
{
    return VERSION_TEXT;
}
