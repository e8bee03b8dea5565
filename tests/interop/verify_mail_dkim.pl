#!/usr/bin/perl
# Verify DKIM signatures with Perl's Mail::DKIM, without touching DNS.
#
# Usage:
#   verify_mail_dkim.pl [--complete-final-line] --key NAME=RECORD [--key ...]
#                       [--keys-file FILE] MSG...
#   verify_mail_dkim.pl [--complete-final-line] --dns HOST:PORT MSG...
#   verify_mail_dkim.pl --supports ALGORITHM
#
# NAME is the DNS owner name of a key record ("sel._domainkey.example.org"),
# RECORD its TXT data ("v=DKIM1; k=rsa; p=..."). A keys file holds one
# "NAME RECORD" pair a line. Public keys are served from these pairs by a
# stand-in for the Net::DNS::Resolver that Mail::DKIM::DNS::resolver() lets
# a caller install (the documented hook); any other name is NXDOMAIN.
#
# --dns HOST:PORT asks a real DNS server instead (a test's own Knot, say):
# Net::DNS::Resolver with that one name server, no search list.
#
# Each message is read as bytes, its line endings normalised to CRLF the way
# an MTA would hand it over (CR LF or bare LF -> CRLF; a bare CR stays), and
# fed to Mail::DKIM::Verifier.
#
# --complete-final-line appends CRLF to a message whose last line has no
# line ending, as SMTP delivery does. RFC 6376 3.4.3 says "simple" body
# canonicalization adds that CRLF anyway, but Mail::DKIM (at least up to
# 1.20230212) hashes such a body without it; this option keeps that
# verifier quirk from masking what the test is about.
#
# One line is printed per DKIM-Signature:
#
#   FILE <TAB> INDEX <TAB> DOMAIN <TAB> SELECTOR <TAB> ALGORITHM <TAB> RESULT <TAB> DETAIL
#
# INDEX counts DKIM-Signature fields from the top, starting at 0; RESULT is
# Mail::DKIM's per-signature result (pass, fail, invalid, ...). A message
# with no signature gives one line with INDEX "-" and RESULT "none".
# Exit status: 0 when every message could be processed, 2 on usage errors,
# 3 if a message could not be read or parsed.
#
# --supports ALGORITHM exits 0 if this Mail::DKIM can verify signatures
# with that a= value (e.g. ed25519-sha256 needs Mail::DKIM >= 1.20230630).

use strict;
use warnings;

use Getopt::Long qw(GetOptions);
use Mail::DKIM::DNS;
use Mail::DKIM::Signature;
use Mail::DKIM::Verifier;
use Net::DNS;

# A minimal object with the part of the Net::DNS::Resolver interface that
# Mail::DKIM::DNS::query uses: send() and errorstring().
package FakeResolver {
    use Net::DNS;

    sub new {
        my ( $class, %records ) = @_;
        return bless { records => {%records}, error => 'NOERROR' }, $class;
    }

    sub send {
        my ( $self, $name, $type ) = @_;
        my $key    = lc $name;
        my $packet = Net::DNS::Packet->new( $name, $type );
        $packet->header->qr(1);
        $packet->header->aa(1);
        if ( uc($type) eq 'TXT' && exists $self->{records}{$key} ) {
            $packet->header->rcode('NOERROR');
            $packet->push( answer => _txt_rr( $name, $self->{records}{$key} ) );
        }
        else {
            $packet->header->rcode('NXDOMAIN');
        }
        return $packet;
    }

    sub errorstring {
        my ($self) = @_;
        return $self->{error};
    }

    # TXT character-strings hold at most 255 octets; long records are split
    # into several strings, as a real zone would publish them.
    sub _txt_rr {
        my ( $name, $data ) = @_;
        my @chunks = unpack '(a255)*', $data;
        return Net::DNS::RR->new(
            owner   => $name,
            type    => 'TXT',
            ttl     => 300,
            txtdata => \@chunks,
        );
    }
}

package main;

sub usage {
    my ($message) = @_;
    print STDERR "$message\n" if defined $message;
    print STDERR "usage: $0 [--complete-final-line] --key NAME=RECORD [--key ...] [--keys-file FILE] MSG...\n"
      . "       $0 [--complete-final-line] --dns HOST:PORT MSG...\n"
      . "       $0 --supports ALGORITHM\n";
    exit 2;
}

sub read_keys_file {
    my ( $path, $records ) = @_;
    open my $fh, '<', $path or usage("cannot open $path: $!");
    while ( my $line = <$fh> ) {
        $line =~ s/\r?\n\z//;
        next if $line =~ /^\s*(?:#|\z)/;
        my ( $name, $record ) = split /\s+/, $line, 2;
        usage("bad line in $path: $line") unless defined $record;
        $records->{ lc $name } = $record;
    }
    close $fh;
    return;
}

sub read_message {
    my ( $path, $complete_final_line ) = @_;
    open my $fh, '<:raw', $path or die "cannot open $path: $!\n";
    local $/;
    my $data = <$fh>;
    close $fh;
    $data = '' unless defined $data;
    $data =~ s/\015?\012/\015\012/g;
    $data .= "\015\012" if $complete_final_line && $data !~ /\015\012\z/;
    return $data;
}

sub clean {
    my ($text) = @_;
    $text = '' unless defined $text;
    $text =~ s/[\t\r\n]+/ /g;
    return $text;
}

sub verify_file {
    my ( $path, $complete_final_line ) = @_;
    my $verifier = Mail::DKIM::Verifier->new();
    $verifier->PRINT( read_message( $path, $complete_final_line ) );
    $verifier->CLOSE();

    my @signatures = grep { $_->isa('Mail::DKIM::Signature') } $verifier->signatures;
    if ( !@signatures ) {
        print join( "\t", $path, '-', '', '', '', 'none', clean( $verifier->result_detail ) ), "\n";
        return;
    }
    my $index = 0;
    for my $signature (@signatures) {
        print join( "\t",
            $path, $index++,
            clean( $signature->domain ),
            clean( $signature->selector ),
            clean( $signature->algorithm ),
            clean( $signature->result ),
            clean( $signature->result_detail ) ),
          "\n";
    }
    return;
}

sub main {
    my ( @key_args, @key_files, $supports, $complete_final_line, $dns );
    GetOptions(
        'dns=s'               => \$dns,
        'key=s'               => \@key_args,
        'keys-file=s'         => \@key_files,
        'supports=s'          => \$supports,
        'complete-final-line' => \$complete_final_line,
    ) or usage();

    if ( defined $supports ) {
        exit( defined Mail::DKIM::Signature->get_algorithm_class($supports) ? 0 : 1 );
    }
    usage('no message given') unless @ARGV;

    my %records;
    for my $arg (@key_args) {
        my ( $name, $record ) = split /=/, $arg, 2;
        usage("bad --key $arg") unless defined $record && length $name;
        $records{ lc $name } = $record;
    }
    read_keys_file( $_, \%records ) for @key_files;

    if ( defined $dns ) {
        usage('--dns and --key/--keys-file exclude each other') if %records;
        my ( $host, $port ) = $dns =~ /\A(.+):(\d+)\z/ or usage("bad --dns $dns");
        Mail::DKIM::DNS::resolver(
            Net::DNS::Resolver->new(
                nameservers => [$host],
                port        => $port,
                defnames    => 0,
                dnsrch      => 0,
                tcp_timeout => 5,
                udp_timeout => 5,
                retry       => 2,
            )
        );
    }
    else {
        Mail::DKIM::DNS::resolver( FakeResolver->new(%records) );
    }

    my $status = 0;
    for my $path (@ARGV) {
        my $ok = eval { verify_file( $path, $complete_final_line ); 1 };
        if ( !$ok ) {
            print join( "\t", $path, '-', '', '', '', 'error', clean($@) ), "\n";
            $status = 3;
        }
    }
    return $status;
}

exit main();
