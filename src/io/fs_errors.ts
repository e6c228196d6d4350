/** File-system errors in words: messages name the path and say why, never raw errno text. */
import {ValueError} from '../errors';

const REASONS: {[code: string]: string} = {
  EACCES: 'permission denied',
  EPERM: 'the operation is not permitted',
  ENOENT: 'it (or a folder on its path) does not exist',
  ENOTDIR: 'a part of its path is a file, not a folder',
  EISDIR: 'it is a folder',
  EEXIST: 'it already exists',
  EBUSY: 'it is busy (in use, or a mount point)',
  EROFS: 'the file system is read-only',
  ENOSPC: 'the disk is full',
  EDQUOT: 'the disk quota is exceeded',
  ENAMETOOLONG: 'the path is too long',
  ELOOP: 'it has too many levels of symbolic links',
  EXDEV: 'it is on another file system',
  ENOTEMPTY: 'the folder is not empty',
  EMFILE: 'too many files are open',
  EIO: 'an input/output error',
};

/** Why an fs call failed, in words (the code only when there are no words for it). */
export function fsErrorReason(error: unknown): string {
  const code = (error as NodeJS.ErrnoException|null)?.code;
  if (code != null) return REASONS[code] ?? `the system refused it (${code})`;
  return error instanceof Error ? error.message : String(error);
}

/** A ValueError "Cannot <action> <file>: <reason>"; a ValueError passes through unchanged. */
export function fileError(action: string, file: string, error: unknown): ValueError {
  if (error instanceof ValueError) return error;
  return new ValueError(`Cannot ${action} ${file}: ${fsErrorReason(error)}`);
}

/** The fs error code of `error`, or undefined. */
export function errorCode(error: unknown): string|undefined {
  return (error as NodeJS.ErrnoException|null)?.code;
}
