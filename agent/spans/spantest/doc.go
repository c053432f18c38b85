// Package spantest holds the fixtures the tests of agent and its packages
// share: probes shaped like the guide's spans, the events of one request,
// typed values, and a collector of finished span records. It is imported
// by tests only; nothing in it is part of the agent's behaviour.
package spantest
