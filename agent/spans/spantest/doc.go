// Package spantest holds the fixtures the tests of agent and its packages
// (and cmd/routerscope's) share: probes shaped like the guide's spans, the
// events of one request, typed values, a collector of finished span
// records, Feed (events through an Assembler) and OTLPConfig (a config
// exporting to a test receiver). It is imported by tests only
// (TestImportDirection checks); nothing in it is part of the agent's
// behaviour.
package spantest
