package agent

import "github.com/routerscope/routerscope/agent/export"

// Version is the agent's version: `routerscope version` prints it, the
// image is tagged with it, and every span's instrumentation scope carries
// it (the export stamps it, so it is defined there).
const Version = export.Version
