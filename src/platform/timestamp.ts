// Timestamps on the wire are part of the contract (src/contract/), which the typed client
// imports without any server code; server modules keep importing them from here.
export { formatTimestamp, TimestampString } from "../contract/timestamp.js"
