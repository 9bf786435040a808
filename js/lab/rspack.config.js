// Module and chunk ids named after their paths inside this folder, not hashed from absolute
// identifiers: the committed build then does not depend on where the repository or the Python
// environment (whose jupyter-builder runs the build) lives, so CI can compare it byte for byte.
module.exports = {
  optimization: { moduleIds: 'named', chunkIds: 'named' },
};
