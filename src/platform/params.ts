// Parameter and body schemas are part of the wire contract (src/contract/), which the typed
// client imports without any server code; server modules keep importing them from here.
export {
  boundedText,
  decodeParam,
  firstIssueMessage,
  issueMessage,
  MAX_ISSUE_MESSAGE_LENGTH,
  nonBlank,
  strictBody,
  TEXT_LIMITS,
  UuidParam,
  UuidString
} from "../contract/params.js"
