// Package readlimit reads files the agent does not control (its config,
// probe files, a CA bundle, another process's /proc entries) with a bound
// on the bytes read, so a huge file or an endless one (/dev/zero, a FIFO
// fed forever) cannot exhaust the agent's memory. It never logs.
package readlimit
