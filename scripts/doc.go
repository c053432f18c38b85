// Package scripts holds the project's shell scripts (demo, prerequisites,
// collector and control-plane builds) and the tests that run them with
// stand-in tools; it has no Go code of its own.
package scripts
