// Package strictyaml is the one strict YAML decoding every routerscope
// loader uses (agent config, probe specs and offsets, router config):
// struct decoding that refuses unknown keys, a node walk whose errors
// name the key's full path, its line, and what is allowed there, and a
// syntax error that names the line of the mistake. It knows no schema and
// no sentinel error of its callers, and never logs; it imports nothing of
// routerscope's, so the traced router may use it.
package strictyaml
