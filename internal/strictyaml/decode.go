package strictyaml

import (
	"bytes"

	"gopkg.in/yaml.v3"
)

// Decode decodes the first document of data into v, refusing keys that v
// has no field for. A document with nothing in it returns io.EOF, which a
// caller may take as "all defaults".
func Decode(data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	return dec.Decode(v)
}
