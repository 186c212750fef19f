// The digest schema is part of the wire contract (src/contract/), which the typed client
// imports without any server code; server modules keep importing it from here.
export { digestFromHex, digestHex, Sha256Digest } from "../contract/digest.js"
